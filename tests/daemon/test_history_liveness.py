"""Issue 15 through the real broker with the in-process daemon: changes attributed to their
task and principal, the power history (paged, owner-scoped, kept over a restart), node
liveness from any report, the transition metrics. Liveness on the agent's own heartbeat
interval is tested on a frozen clock in tests/daemon/fast/test_history.py (here the
injected clock moved with the wall clock, so a loaded machine made the node unreachable
before the test advanced it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from vmd.model import Reply, VmStatus

from .conftest import Cloud, StartDaemon
from .harness import FakeAgent, eventually


def _hist(reply: Reply) -> list[tuple[int, str, str, str, str | None]]:
    assert reply.code == 200, reply
    return [(e["seq"], e["previous"], e["status"], e["cause"], e["principal"])
            for e in reply.body["result"]]


async def test_start_attributed_then_history_paged_scoped_and_kept(
    cloud: Cloud, start_daemon: StartDaemon,
) -> None:
    web02 = cloud.vm("web02.example.com")
    reply = await cloud.call("alice", "PUT", "/vm/web02.example.com/status/start")
    assert reply.code == 201
    task_id = reply.body["task_id"]
    task = await cloud.agent.next_task()
    # The watcher's "running" arrives before the result: it is the task's change.
    await cloud.agent.observe(cloud.agent.vms[web02.uuid], "running")
    await eventually(lambda: web02.status is VmStatus.RUNNING, what="web02 running")
    await cloud.agent.result(task)
    await cloud.events.wait(lambda _: cloud.events.tasks_done(task_id))
    changes = [(e["previous"], e["status"], e["cause"], e["task_id"], e["principal"])
               for e in cloud.events.status_changes(web02.uuid)]
    assert changes[-2:] == [("stopped", "starting", "task", task_id, "alice"),
                            ("starting", "running", "task", task_id, "alice")]
    history = _hist(await cloud.call("alice", "GET", "/vm/web02.example.com/status/history"))
    seq = web02.seq
    assert history == [(seq, "starting", "running", "task", "alice"),
                       (seq - 1, "stopped", "starting", "task", "alice"),
                       (seq - 2, "notcreated", "stopped", "sync", None)]
    page = _hist(await cloud.call("alice", "GET", f"/vm/{web02.uuid}/status/history/",
                                  {"limit": 1, "before": seq}))
    assert page == [history[1]]
    hidden = await cloud.call("bob", "GET", "/vm/web02.example.com/status/history")
    assert hidden == Reply(404, {"detail": "VM not found"})
    bad = await cloud.call("alice", "GET", "/vm/web02.example.com/status/history",
                           {"limit": "1001"})
    assert (bad.code, bad.body["result"]) == (
        400, {"limit": ["Ensure this value is less than or equal to 1000."]})
    assert cloud.daemon.metrics.requests.labels("history", "200")._value.get() == 2
    # Kept in the store: a restarted daemon answers the same.
    await cloud.daemon.shutdown()
    await start_daemon()
    again = _hist(await cloud.call("alice", "GET", "/vm/web02.example.com/status/history"))
    assert again == history


async def test_transition_metrics(cloud: Cloud) -> None:
    web01 = cloud.vm("web01.example.com")
    registry = cloud.daemon.metrics.registry
    labels = {"action": "stop", "outcome": "success"}
    before = registry.get_sample_value("vmd_transition_duration_seconds_count", labels)
    reply = await cloud.call("admin", "PUT", "/vm/web01.example.com/status/stop")
    assert reply.code == 201
    task = await cloud.agent.next_task()
    transitional = cloud.daemon.core.transitional
    assert len(transitional) == 1

    def oldest() -> float:
        return registry.get_sample_value("vmd_transitional_oldest_seconds") or 0.0

    await eventually(lambda: oldest() > 0.0, what="the oldest transitional VM's age")
    await cloud.agent.result(task)
    await eventually(lambda: web01.status is VmStatus.STOPPED, what="web01 stopped")
    after = registry.get_sample_value("vmd_transition_duration_seconds_count", labels)
    assert (before, after) == (0.0, 1.0)
    assert len(transitional) == 0
    await eventually(lambda: oldest() == 0.0, what="no VM in a transitional status")


async def test_a_node_is_online_in_the_first_read_after_its_sync(
    cloud: Cloud, make_agent: Callable[..., Awaitable[FakeAgent]],
) -> None:
    agent = await make_agent("node2", beat=False)  # no heartbeat at all
    agent.add(20, "far01.example.com", state="running")
    await agent.full_sync()

    # Read until the VM is there: the first read that shows it shows its node online.
    for _ in range(200):
        reply = await cloud.call("admin", "GET", "/vm/far01.example.com/status")
        if reply.code == 200:
            break
    assert reply.code == 200, reply
    assert reply.body["result"]["node_status"] == "online"
    assert not agent.syncs  # the sync it sent is the one: no second one asked


async def test_the_principal_survives_a_restart_with_its_task(
    cloud: Cloud, start_daemon: StartDaemon,
) -> None:
    web02 = cloud.vm("web02.example.com")
    reply = await cloud.call("alice", "PUT", "/vm/web02.example.com/status/start")
    assert reply.code == 201
    task = await cloud.agent.next_task()
    await cloud.daemon.shutdown()
    daemon = await start_daemon()
    restored = daemon.world.tasks.get(task.task_id)
    assert restored is not None and restored.principal == "alice"
    await cloud.agent.result(task)
    await cloud.events.wait(lambda _: [
        e for e in cloud.events.status_changes(web02.uuid) if e["status"] == "running"])
    running = [e for e in cloud.events.status_changes(web02.uuid) if e["status"] == "running"]
    assert [(e["cause"], e["task_id"], e["principal"]) for e in running] == [
        ("task", task.task_id, "alice")]
