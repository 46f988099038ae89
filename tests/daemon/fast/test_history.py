"""Issue 15 on the daemon's parts without the broker (tests/daemon/test_history_liveness.py
keeps the same on the broker): changes attributed to their task and principal, the power
history (paged, owner-scoped, kept over a restart), a node online in the first read after
its sync, its liveness on its agent's own heartbeat interval, the transition metrics on the
fake clock."""

from __future__ import annotations

from support.fastdaemon import FastDaemon, Vm, vm_uuid

from vmd.model import NodeName, NodeStatus, Reply, VmStatus

from .conftest import MakeFast


def _hist(reply: Reply) -> list[tuple[int, str, str, str, str | None]]:
    assert reply.code == 200, reply
    return [(e["seq"], e["previous"], e["status"], e["cause"], e["principal"])
            for e in reply.body["result"]]


async def test_start_attributed_then_history_paged_scoped_and_kept(fast: FastDaemon) -> None:
    web02 = fast.vm("web02.example.com")
    reply = await fast.call("alice", "PUT", "/vm/web02.example.com/status/start")
    task_id = reply.body["task_id"]
    (task,) = fast.tasks()
    # The watcher's "running" arrives before the result: it is the task's change.
    await fast.observe("node1", fast.fleet["web02.example.com"], "running")
    assert web02.status is VmStatus.RUNNING
    await fast.result(task)
    changes = [(e["previous"], e["status"], e["cause"], e["task_id"], e["principal"])
               for e in fast.bus.status_changes(web02.uuid)]
    assert changes[-2:] == [("stopped", "starting", "task", task_id, "alice"),
                            ("starting", "running", "task", task_id, "alice")]
    history = _hist(await fast.call("alice", "GET", "/vm/web02.example.com/status/history"))
    seq = web02.seq
    assert history == [(seq, "starting", "running", "task", "alice"),
                       (seq - 1, "stopped", "starting", "task", "alice"),
                       (seq - 2, "notcreated", "stopped", "sync", None)]
    page = _hist(await fast.call("alice", "GET", f"/vm/{web02.uuid}/status/history/",
                                 {"limit": 1, "before": seq}))
    assert page == [history[1]]
    assert await fast.call("bob", "GET", "/vm/web02.example.com/status/history") == Reply(
        404, {"detail": "VM not found"})
    bad = await fast.call("alice", "GET", "/vm/web02.example.com/status/history",
                          {"limit": "1001"})
    assert (bad.code, bad.body["result"]) == (
        400, {"limit": ["Ensure this value is less than or equal to 1000."]})
    assert fast.metrics.requests.labels("history", "200")._value.get() == 2
    await fast.restart()  # kept in the store
    assert _hist(await fast.call("alice", "GET",
                                 "/vm/web02.example.com/status/history")) == history


async def test_transition_metrics_on_the_clock(fast: FastDaemon) -> None:
    registry = fast.metrics.registry
    labels = {"action": "stop", "outcome": "success"}

    def oldest() -> float | None:
        return registry.get_sample_value("vmd_transitional_oldest_seconds")

    assert (await fast.call("admin", "PUT", "/vm/web01.example.com/status/stop")).code == 201
    (task,) = fast.tasks()
    assert len(fast.core.transitional) == 1
    fast.clock.advance(7.0)
    await fast.tick()
    assert oldest() == 7.0
    await fast.result(task)
    assert fast.vm("web01.example.com").status is VmStatus.STOPPED
    assert registry.get_sample_value("vmd_transition_duration_seconds_count", labels) == 1.0
    assert registry.get_sample_value("vmd_transition_duration_seconds_sum", labels) == 7.0
    await fast.tick()
    assert len(fast.core.transitional) == 0 and oldest() == 0.0


async def test_a_node_is_online_in_the_first_read_after_its_sync(fast: FastDaemon) -> None:
    fast.bus.take()
    await fast.sync("node2", [Vm(vm_uuid(20), "far01.example.com", state="running")])
    reply = await fast.call("admin", "GET", "/vm/far01.example.com/status")
    assert reply.body["result"]["node_status"] == "online"
    assert fast.bus.orders("node2") == []  # the sync it sent is the one: none asked


async def test_unreachable_after_three_of_the_agents_own_intervals(make_fast: MakeFast) -> None:
    # The daemon's default (0.3 s: unreachable after 0.9 s) is for nodes not heard from.
    fast = await make_fast(heartbeat_interval=0.3)
    await fast.heartbeat("node2", interval=5.0)  # announces 5 s: 15 s of silence
    node = fast.world.nodes[NodeName("node2")]
    assert node.status is NodeStatus.ONLINE
    assert fast.nodes.timeouts[node.name] == 15.0
    fast.clock.advance(14.0)
    await fast.tick()
    assert node.status is NodeStatus.ONLINE
    fast.clock.advance(1.5)
    await fast.tick()
    assert node.status is NodeStatus.UNREACHABLE


async def test_the_principal_survives_a_restart_with_its_task(fast: FastDaemon) -> None:
    web02 = fast.vm("web02.example.com")
    assert (await fast.call("alice", "PUT", "/vm/web02.example.com/status/start")).code == 201
    (task,) = fast.tasks()
    await fast.restart()
    restored = fast.world.tasks.get(task.task_id)
    assert restored is not None and restored.principal == "alice"
    await fast.result(task)
    running = [e for e in fast.bus.status_changes(web02.uuid) if e["status"] == "running"]
    assert [(e["cause"], e["task_id"], e["principal"]) for e in running] == [
        ("task", task.task_id, "alice")]
