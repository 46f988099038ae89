"""Process-wide runtime of the long-running services (`vmd daemon`, `vmd agent`, `vmd api`).

What the three processes share and own here, once: the exit codes (`ExitCode`, defined in
vmd.obs.systemd, below the services, which return them), the signal handling
(`run_until_signalled`: SIGTERM/SIGINT only set a flag, the first one `stop`, any later one
`hurry`; the service's runner performs the shutdown steps itself, docs/shutdown.md), and
the collector's thresholds (`tune_gc`). The rest of the runtime lives below the services,
which use it: their guarded long-lived tasks and the one logged reason of a crash
(`vmd.obs.tasks.Supervisor`), and what they tell systemd (`vmd.obs.systemd`).

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

import asyncio
import gc
import signal
from collections.abc import Awaitable, Callable

from vmd.obs.systemd import ExitCode

__all__ = ["GC_THRESHOLDS", "ExitCode", "run_until_signalled", "tune_gc"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)

GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """Apply `GC_THRESHOLDS` (call once, at process start)."""
    gc.set_threshold(*GC_THRESHOLDS)


def run_until_signalled(body: Callable[[asyncio.Event, asyncio.Event], Awaitable[int]]) -> int:
    """Run `body(stop, hurry)` in a new event loop with the signal handlers installed.

    The first SIGTERM/SIGINT sets `stop`; any later one sets `hurry` (cuts the drain's
    waits short). Returns `body`'s exit code.
    """

    async def main() -> int:
        loop = asyncio.get_running_loop()
        stop, hurry = asyncio.Event(), asyncio.Event()

        def on_signal() -> None:
            # Only sets a flag: the service's runner performs the shutdown steps itself.
            (hurry if stop.is_set() else stop).set()

        for sig in SIGNALS:
            loop.add_signal_handler(sig, on_signal)
        try:
            return int(await body(stop, hurry))
        finally:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)

    return asyncio.run(main())
