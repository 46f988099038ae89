"""Process-wide runtime settings of the long-running services (`vmd daemon`, `vmd agent`).

The cyclic garbage collector. Nearly everything the services allocate per message (frames,
bodies, dicts of a decision) is freed by reference counting the moment it is dropped;
the collector finds almost nothing (bench runs: 0-30 objects per full collection in the
daemon). With CPython's default thresholds (700, 10, 10) it still ran a full collection
every ~0.7 s at 600 commands/s, each scanning every live object (the daemon's ended tasks
and idempotency records: 50k-100k objects, 10-80 ms on this 2-core machine): a stall of
the event loop that every request in flight waits through. Raising the first threshold
makes all three generations run ~70 times less often; young cycles are still collected
(every 50,000 net allocations), so memory stays bounded. Measured in `bench/commands.py`
(docs/performance.md): about a tenth more commands/s at the peak.
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """Apply `GC_THRESHOLDS` (call once, at process start)."""
    gc.set_threshold(*GC_THRESHOLDS)
