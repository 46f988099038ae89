"""Task ends the daemon decides on its own, on the real broker: deadlines (the running
deadline timer on an injected clock), tasks the broker dead-letters unrun from their queue,
and the metrics of it all, scraped over HTTP. An ended task read back from the store is
tested without the broker in tests/daemon/fast/test_deadlines.py."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Awaitable, Callable

from vmd.bus import BusClient
from vmd.model import Action, Reply, Request, VmStatus

from .conftest import Cloud, ManualClock, StartDaemon, daemon_options, seed
from .harness import EventLog, FakeAgent, eventually, vm_uuid


async def test_deadline_revokes_and_the_vm_goes_back(
    start_daemon: StartDaemon, make_agent: Callable[..., Awaitable[FakeAgent]],
    make_client: Callable[..., Awaitable[BusClient]], events: EventLog,
) -> None:
    clock = ManualClock()
    daemon = await start_daemon(options=daemon_options(clock=clock), heartbeat_interval=1000)
    # The node's liveness follows the interval its heartbeats announce (3 x it), on the
    # daemon's clock: with the fake agent's 0.1 s, the ~330 s the clock jumps would make the
    # node unreachable, and an unreachable node is not re-synced. Its first heartbeat (sent
    # before the seed's sync, on the same ordered queue) announces 1000 s.
    agent = await make_agent("node1", heartbeat=1000.0)
    await seed(daemon, agent)
    alice = await make_client("alice")
    replies: list[Reply] = []

    async def stream() -> None:
        request = Request("PUT", "/vm/web02.example.com/status/start")
        async for reply in alice.stream(request, timeout=10, final_timeout=10):
            replies.append(reply)

    streaming = asyncio.create_task(stream())
    task = await agent.next_task()
    # The 202 went out with the order, but to another consumer: it may arrive after it.
    await eventually(lambda: replies, what="the stream's 202")
    web02 = daemon.world.vms.by_hostname["web02.example.com"]
    assert web02.status is VmStatus.STARTING
    # Not yet: the clock jumps to a minute short of the task's own deadline (however long
    # the steps above took), and what the deadline timer decides at this time is decided
    # here (nothing is due, so it does not matter whether the timer looked too). The clock
    # moves with real time (ManualClock): a minute leaves any stall of a loaded machine far
    # from the edge; the exact edge is tests/daemon/fast/test_deadlines.py's.
    clock.advance_to(task.deadline - ManualClock.MARGIN)
    assert daemon.core.expire_due(clock()) == 0
    assert web02.status is VmStatus.STARTING and len(replies) == 1
    clock.advance_to(task.deadline + 1.0)  # past it: the running timer revokes the task
    await asyncio.wait_for(streaming, 10)
    assert replies[1] == Reply(410, {"status": "REVOKED", "task_id": task.task_id, "result": {
        "message": "Task deadline exceeded", "detail": "Task deadline exceeded"}})
    assert web02.status is VmStatus.STOPPED
    done = await events.wait(lambda _: events.tasks_done(task.task_id))
    assert done[0]["status"] == "REVOKED"
    back = events.status_changes(web02.uuid)[-1]
    assert (back["previous"], back["status"], back["cause"]) == ("starting", "stopped", "task")
    resync = await agent.next_task()  # the node is online: re-sync at once
    assert (resync.action, resync.uuid) == (Action.CURRENT, vm_uuid(2))
    # A late result changes nothing: the task ended once.
    await agent.result(task)
    await agent.result(resync, state="stopped")
    await events.wait(lambda _: events.tasks_done(resync.task_id))
    assert len(events.tasks_done(task.task_id)) == 1
    assert web02.status is VmStatus.STOPPED
    outcomes = daemon.metrics.tasks
    assert outcomes.labels("start", "revoked")._value.get() == 1
    assert outcomes.labels("current", "success")._value.get() == 1


async def test_task_expired_in_its_queue_ends_at_once(
    start_daemon: StartDaemon, make_agent: Callable[..., Awaitable[FakeAgent]],
    make_client: Callable[..., Awaitable[BusClient]], events: EventLog,
) -> None:
    # The agent heartbeats but takes no task: the broker dead-letters it at its TTL.
    daemon = await start_daemon(start_deadline=0.5, options=daemon_options(tick=30.0))
    agent = await make_agent("node1")
    await seed(daemon, agent)
    await agent.bus.stop_consuming()
    alice = await make_client("alice")
    reply = await alice.call(Request("PUT", "/vm/web02.example.com/status/start"))
    assert reply.code == 201
    done = await events.wait(lambda _: events.tasks_done(reply.body["task_id"]))
    assert done[0]["status"] == "REVOKED"
    assert daemon.world.vms.by_hostname["web02.example.com"].status is VmStatus.STOPPED


async def test_metrics_are_served(cloud: Cloud) -> None:
    await cloud.call("alice", "GET", "/vm/web01.example.com/status")
    await cloud.call("alice", "PUT", "/vm/web01.example.com/status/start")
    server = cloud.daemon.metrics_server
    assert server is not None

    def scrape() -> str:
        with urllib.request.urlopen(server.url, timeout=5) as response:
            text: str = response.read().decode()
            return text

    text = await asyncio.to_thread(scrape)
    for line in (
        'vmd_vms{status="running"} 3.0',
        'vmd_vms{status="stopped"} 2.0',
        'vmd_nodes{status="online"} 1.0',
        'vmd_requests_total{code="200",kind="get"} 1.0',
        'vmd_requests_total{code="417",kind="start"} 1.0',
        'vmd_status_changes_total{cause="sync"} 5.0',
        "vmd_tasks_in_flight 0.0",
        "vmd_broker_reconnects_total 0.0",
        "vmd_idempotent_replays_total 0.0",
        "vmd_drift_corrected_total 0.0",
    ):
        assert line in text, line
    for family in ("vmd_request_duration_seconds_bucket", "vmd_task_duration_seconds_bucket",
                   "vmd_reconcile_lag_seconds_bucket", "vmd_frozen_observations_ignored_total",
                   "vmd_tasks_total", "vmd_build_info"):
        assert family in text, family
