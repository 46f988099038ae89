"""How late the event loop runs: `vmd_event_loop_lag_seconds`, in every process.

Each vmd process is one asyncio loop: a callback that holds it (a big answer rendered in
one go, a burst of deliveries handled back to back, a full garbage collection) delays
everything else in the process, heartbeats and the systemd watchdog included (issue 12).
`monitor_loop_lag` asks the loop to wake it after a fixed interval and observes by how
much the wake-up came later than asked: the time the loop was busy with something else
when the timer was due. Each observation is one interval's worst delay of a timer, which
is what a heartbeat or a reply waiting on this loop suffered. An idle loop shows ~0.1 ms
(the selector's resolution); the buckets go from 1 ms to 10 s.

Cost: one timer per `interval` (0.25 s): nothing measurable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from prometheus_client import CollectorRegistry, Histogram

NAME: Final = "vmd_event_loop_lag_seconds"
INTERVAL: Final = 0.25
LOOP_LAG_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def loop_lag_histogram(registry: CollectorRegistry) -> Histogram:
    """The family on `registry` (one per process: daemon, agent, gateway)."""
    return Histogram(
        NAME, "How much later than due the event loop ran a timer (sampled every 0.25 s).",
        buckets=LOOP_LAG_BUCKETS, registry=registry)


async def monitor_loop_lag(*, observe: Callable[[float], None], interval: float = INTERVAL,
                           samples: int | None = None) -> None:
    """Observe the loop's lag every `interval` s until cancelled (or `samples` times)."""
    loop = asyncio.get_running_loop()
    n = 0
    while samples is None or n < samples:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        observe(max(0.0, loop.time() - due))
        n += 1
