"""Node reports through the daemon's parts (tests/daemon/test_nodes_observations.py's
behaviour, without the broker): out-of-band observations, node loss by heartbeat silence on
the fake clock and return, maintenance from the configuration, drift corrected by a sync,
and reports from the wrong sender refused."""

from __future__ import annotations

from support.fastdaemon import FastDaemon, Vm, vm_uuid

from vmd.bus import SyncRequest, TaskResult
from vmd.model import Action, NodeName, NodeStatus, OutcomeKind, Reply, TaskOutcome, VmStatus

from .conftest import MakeFast

DOWN = Reply(423, {"detail": "Node is not operational"})


def refused(fast: FastDaemon, reason: str) -> float | None:
    return fast.metrics.registry.get_sample_value(
        "vmd_agent_messages_refused_total", {"reason": reason})


async def test_out_of_band_observation_is_applied_and_published(fast: FastDaemon) -> None:
    web01 = fast.vm("web01.example.com")
    seq = web01.seq
    await fast.observe("node1", fast.fleet["web01.example.com"], "stopped")
    assert web01.status is VmStatus.STOPPED
    (event,) = [e for e in fast.bus.status_changes(web01.uuid) if e["seq"] == seq + 1]
    assert (event["previous"], event["status"], event["cause"], event["task_id"]) == (
        "running", "stopped", "node", None)
    # A VM seen for the first time is added.
    await fast.observe("node1", Vm(vm_uuid(9), "new01.example.com"), "running")
    listed = await fast.call("alice", "GET", "/vm/new01.example.com/status")
    assert listed.body["result"]["status"] == "running"


async def test_node_loss_by_silence_and_return(fast: FastDaemon) -> None:
    node = fast.world.nodes[NodeName("node1")]
    await fast.heartbeat(interval=10.0)  # silence past 3 x 10 s is a lost node
    fast.bus.take()
    fast.clock.advance(29.0)
    await fast.tick()
    assert node.status is NodeStatus.ONLINE  # not yet
    assert fast.bus.events("node.node1.status") == []
    fast.clock.advance(2.0)
    await fast.tick()
    assert node.status is NodeStatus.UNREACHABLE
    ((_, lost),) = fast.bus.events("node.node1.status")
    assert lost == {"node": "node1", "status": "unreachable", "previous": "online",
                    "time": lost["time"]}
    assert lost["time"].endswith("Z")
    assert await fast.call("alice", "PUT", "/vm/web02.example.com/status/start") == DOWN
    status = await fast.call("alice", "GET", "/vm/web02.example.com/status")
    assert status.body["result"]["node_status"] == "unreachable"
    fast.bus.take()
    await fast.heartbeat(interval=10.0)
    assert node.status is NodeStatus.ONLINE
    assert fast.bus.orders("node1") == [SyncRequest(NodeName("node1"), "node online")]
    assert [body["status"] for _, body in fast.bus.events("node.node1.status")] == ["online"]
    assert (await fast.call("alice", "PUT", "/vm/web02.example.com/status/start")).code == 201
    counts = fast.metrics.node_status()
    assert (counts["online"], counts["unreachable"]) == (1, 0)


async def test_a_lost_node_back_by_its_full_sync_is_not_asked_for_one(fast: FastDaemon) -> None:
    fast.clock.advance(31.0)  # the configured heartbeat_interval 10 s: 3 x it
    await fast.tick()
    assert fast.world.nodes[NodeName("node1")].status is NodeStatus.UNREACHABLE
    fast.bus.take()
    await fast.sync("node1", list(fast.fleet.values()))
    assert fast.world.nodes[NodeName("node1")].status is NodeStatus.ONLINE
    assert fast.bus.orders("node1") == []


async def test_maintenance_from_the_configuration(make_fast: MakeFast) -> None:
    fast = await make_fast(maintenance=["node2"])
    node = fast.world.nodes[NodeName("node2")]
    assert node.status is NodeStatus.MAINTENANCE
    await fast.sync("node2", [Vm(vm_uuid(1), "m01.example.com")])
    await fast.heartbeat("node2")
    assert node.status is NodeStatus.MAINTENANCE  # reports do not end it
    assert await fast.call("alice", "PUT", "/vm/m01.example.com/status/start") == DOWN
    assert fast.metrics.node_status()["maintenance"] == 1


async def test_a_sync_corrects_drift(fast: FastDaemon) -> None:
    web01 = fast.vm("web01.example.com")
    fast.fleet["web01.example.com"].state = "stopped"  # changed, its event lost
    fast.clock.advance(1.0)
    await fast.sync("node1", list(fast.fleet.values()))
    assert web01.status is VmStatus.STOPPED
    assert fast.metrics.drift_corrected._value.get() == 1
    assert fast.bus.status_changes(web01.uuid)[-1]["cause"] == "sync"


async def test_reports_from_another_nodes_agent_are_refused(fast: FastDaemon) -> None:
    web01 = fast.vm("web01.example.com")
    obs_from_node2 = await fast.report(TaskResult(
        "0-00000000-0000-0000-0000", web01.uuid, NodeName("node1"), Action.STOP,
        TaskOutcome(OutcomeKind.SUCCESS, 0, "x"), fast.clock()), user="vmd-agent-node2")
    assert fast.bus.settled(obs_from_node2).how == "ack"  # dropped, not retried
    assert refused(fast, "wrong_node") == 1
    stranger = await fast.report(TaskResult(
        "0-00000000-0000-0000-0000", web01.uuid, NodeName("node1"), Action.STOP,
        TaskOutcome(OutcomeKind.SUCCESS, 0, "x"), fast.clock()), user="bob")
    assert fast.bus.settled(stranger).how == "ack"
    assert refused(fast, "unknown_sender") == 1
    assert web01.status is VmStatus.RUNNING
