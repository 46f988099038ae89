"""The periodic reconcile on a running daemon: its loop asks the node for a full sync, which
corrects the drift and counts it. Out-of-band observations (docs/fsm.md §5), frozen VMs
(§4), node loss by heartbeat silence and return (§1) and maintenance are behaviour, tested
on the fake clock without the broker in tests/daemon/fast/test_nodes.py."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from vmd.model import VmStatus

from .conftest import StartDaemon, seed
from .harness import FakeAgent, eventually


async def test_reconcile_corrects_drift(
    start_daemon: StartDaemon, make_agent: Callable[..., Awaitable[FakeAgent]],
) -> None:
    daemon = await start_daemon(reconcile_interval=0.3)
    agent = await make_agent("node1")
    await seed(daemon, agent)
    web01 = daemon.world.vms.by_hostname["web01.example.com"]
    syncs = len(agent.syncs)
    # The node changed and its event was lost: only the reconcile can tell.
    agent.vms[web01.uuid].state = "stopped"
    agent.vms[web01.uuid].change_time = time.time()
    await eventually(lambda: web01.status is VmStatus.STOPPED, what="the drift corrected")
    assert len(agent.syncs) > syncs
    assert {s.reason for s in agent.syncs[syncs:]} == {"reconcile"}
    assert daemon.metrics.drift_corrected._value.get() == 1
