"""`vmd_event_loop_lag_seconds` (vmd.obs.looplag): what it observes, and that the daemon's,
the agent's and the gateway's registries carry it."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import generate_latest

from vmd.api.metrics import ApiMetrics
from vmd.obs.looplag import LOOP_LAG_BUCKETS, NAME, monitor_loop_lag
from vmd.obs.metrics import AgentMetrics, DaemonMetrics, new_registry


async def test_a_held_loop_shows_as_lag() -> None:
    seen: list[float] = []
    monitor = asyncio.create_task(
        monitor_loop_lag(observe=seen.append, interval=0.01, samples=3))
    await asyncio.sleep(0)  # the monitor's first timer is due in 10 ms
    time.sleep(0.1)  # a callback holding the loop for 100 ms  # noqa: ASYNC251
    await monitor
    assert len(seen) == 3
    # The first timer ran at least 90 ms late; never negative.
    assert seen[0] >= 0.09 and min(seen) >= 0.0


def test_every_process_exports_the_histogram() -> None:
    for metrics in (DaemonMetrics(new_registry()), AgentMetrics(new_registry()),
                    ApiMetrics(new_registry())):
        metrics.loop_lag.observe(0.003)
        text = generate_latest(metrics.registry).decode()
        assert f"# TYPE {NAME} histogram" in text
        assert f'{NAME}_bucket{{le="0.005"}} 1.0' in text
        assert f"{NAME}_count 1.0" in text
    assert LOOP_LAG_BUCKETS[0] == 0.001 and LOOP_LAG_BUCKETS[-1] == 10.0
