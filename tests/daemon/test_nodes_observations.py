"""Node reports through the daemon: out-of-band observations (docs/fsm.md §5), frozen VMs
(§4), node loss and return (§1), maintenance, the periodic reconcile and its drift count."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from vmd.bus import BusClient, SyncRequest
from vmd.model import NodeName, NodeStatus, Reply, Request, VmStatus

from .conftest import Cloud, StartDaemon, seed
from .harness import FakeAgent, eventually


async def test_out_of_band_observation_is_applied_and_published(cloud: Cloud) -> None:
    web01 = cloud.vm("web01.example.com")
    seq = web01.seq
    await cloud.agent.observe(cloud.agent.vms[web01.uuid], "stopped")
    await eventually(lambda: web01.status is VmStatus.STOPPED, what="web01 stopped")
    event = await cloud.events.wait(
        lambda _: [e for e in cloud.events.status_changes(web01.uuid) if e["seq"] == seq + 1])
    assert (event[0]["previous"], event[0]["status"], event[0]["cause"],
            event[0]["task_id"]) == ("running", "stopped", "node", None)
    # A VM seen for the first time is added.
    new = cloud.agent.add(9, "new01.example.com", state="running")
    await cloud.agent.observe(new, "running")
    await eventually(lambda: "new01.example.com" in cloud.daemon.world.vms.by_hostname)
    listed = await cloud.call("alice", "GET", "/vm/new01.example.com/status")
    assert listed.body["result"]["status"] == "running"
    assert cloud.daemon.metrics.reconcile_lag._sum.get() >= 0.0


async def test_frozen_vm_ignores_its_node(cloud: Cloud) -> None:
    web02 = cloud.vm("web02.example.com")
    reply = await cloud.call("admin", "PUT", "/vm/web02.example.com/status/stop",
                             {"freeze": True})
    assert reply.code == 200
    await cloud.agent.observe(cloud.agent.vms[web02.uuid], "running")
    ignored = cloud.daemon.metrics.frozen_ignored
    await eventually(lambda: ignored._value.get() == 1, what="the frozen-ignored count")
    assert web02.status is VmStatus.FROZEN


async def test_node_loss_and_return(cloud: Cloud) -> None:
    node = cloud.daemon.world.nodes[NodeName("node1")]
    await cloud.agent.stop_heartbeats()
    await eventually(lambda: node.status is NodeStatus.UNREACHABLE, what="node1 unreachable")
    lost = await cloud.events.wait(lambda _: [
        e for e in cloud.events.of("node.node1.status") if e["status"] == "unreachable"])
    assert lost == [{"node": "node1", "status": "unreachable", "previous": "online",
                     "time": lost[0]["time"]}]
    assert lost[0]["time"].endswith("Z")
    down = await cloud.call("alice", "PUT", "/vm/web02.example.com/status/start")
    assert down == Reply(423, {"detail": "Node is not operational"})
    status = await cloud.call("alice", "GET", "/vm/web02.example.com/status")
    assert status.body["result"]["node_status"] == "unreachable"
    syncs = len(cloud.agent.syncs)
    cloud.agent.start_heartbeats()
    await eventually(lambda: node.status is NodeStatus.ONLINE, what="node1 online")
    await eventually(lambda: len(cloud.agent.syncs) > syncs, what="a sync request")
    assert cloud.agent.syncs[-1] == SyncRequest(NodeName("node1"), "node online")
    events = cloud.events.of("node.node1.status")
    assert [e["status"] for e in events][-2:] == ["unreachable", "online"]
    assert (await cloud.call("alice", "PUT", "/vm/web02.example.com/status/start")).code == 201
    metrics = cloud.daemon.metrics.node_status()
    assert (metrics["online"], metrics["unreachable"]) == (1, 0)


async def test_maintenance_from_the_configuration(
    start_daemon: StartDaemon, make_agent: Callable[..., Awaitable[FakeAgent]],
    make_client: Callable[..., Awaitable[BusClient]],
) -> None:
    daemon = await start_daemon(maintenance=["node2"])
    node = daemon.world.nodes[NodeName("node2")]
    assert node.status is NodeStatus.MAINTENANCE
    since = time.time()
    agent = await make_agent("node2")
    agent.add(1, "m01.example.com", state="stopped")
    await agent.full_sync()
    await eventually(lambda: "m01.example.com" in daemon.world.vms.by_hostname)
    await eventually(lambda: (node.last_heartbeat or 0) > since, what="a heartbeat applied")
    assert node.status is NodeStatus.MAINTENANCE  # heartbeats do not end it
    alice = await make_client("alice")
    reply = await alice.call(Request("PUT", "/vm/m01.example.com/status/start"), timeout=10)
    assert reply == Reply(423, {"detail": "Node is not operational"})
    assert daemon.metrics.node_status()["maintenance"] == 1


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
