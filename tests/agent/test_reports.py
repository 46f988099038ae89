"""What the agent reports without being asked: out-of-band changes with the node's change
time, full syncs (start, sync_request, broker reconnect), heartbeats and the ISO list."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable

from node_agent.conftest import wait_for
from support.amqp import agent_user
from support.proxy import TcpProxy

from vmd.bus import BusSettings, FullSync, Heartbeat, IsoList, ObservationReport
from vmd.model import Observation
from vmd.node_agent.driver.events import parse_date

from .conftest import NODE, VMADM, AgentFactory, DaemonSide, Sim, sim_backend


def change_times(sim: Sim, uuid: str, state: str | None) -> list[float]:
    """The node's change times (event dates) at which the VM reached `state`."""
    times = []
    for line in (sim.root / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("uuid") != uuid:
            continue
        reached = (event["type"] == "delete" if state is None
                   else (event.get("vm") or {}).get("state") == state)
        if reached:
            times.append(parse_date(event["date"]))
    return times


async def observed(daemon: DaemonSide, uuid: str, state: str | None,
                   after: int) -> Observation:
    """The observation of `uuid` reaching `state` (from report `after` on)."""
    report = await daemon.wait(ObservationReport, lambda r: any(
        o.uuid == uuid and o.state == state for o in r.observations), after=after)
    return next(o for o in report.observations if o.uuid == uuid and o.state == state)


async def test_out_of_band_changes_reach_the_daemon_with_the_nodes_change_time(
    daemon: DaemonSide, make_agent: AgentFactory, sim: Sim
) -> None:
    """A crash, a VM created and destroyed, an operator's own vmadm: each reaches the daemon
    unasked, with the date of the node's event as its change time (docs/driver.md, the
    watcher). How fast (docs/architecture.md's 1 s) is bench/observation_lag.py's figure,
    not a bound here: a wall-clock bound across the simulator's events process, the broker
    and this loop fails whenever the shared machine stalls one of them."""
    uuid = await sim.create("kvm", "running", hostname="web01.example.com")
    running = await make_agent(sim_backend(sim), sim=sim)
    await daemon.wait(FullSync)
    # The watcher's `vmadm events` starts after the full sync; a change before its `ready`
    # line is found by diffing that snapshot, with the line's date as its change time (right,
    # but not the event's date this test compares with): wait for the stream to be ready.
    syncer = running.agent.syncer
    await wait_for(lambda: syncer._watcher is not None and syncer._watcher.stats.events >= 1)

    mark = len(daemon.received)
    await sim.ctl("crash", uuid)
    obs = await observed(daemon, uuid, "stopped", mark)
    assert obs.change_time in change_times(sim, uuid, "stopped")

    mark = len(daemon.received)
    created = await sim.create("bhyve", "stopped", hostname="new.example.com")
    obs = await observed(daemon, created, "stopped", mark)
    assert obs.vm is not None and obs.vm["hostname"] == "new.example.com"
    assert obs.vm["brand"] == "bhyve"
    assert obs.change_time in change_times(sim, created, "stopped")

    mark = len(daemon.received)
    await sim.ctl("destroy", created)
    obs = await observed(daemon, created, None, mark)
    assert obs.vm is None and obs.change_time in change_times(sim, created, None)

    # An operator's own vmadm on the node.
    mark = len(daemon.received)
    proc = await asyncio.create_subprocess_exec(
        str(VMADM), "start", uuid, env={**os.environ, **sim.env},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    assert await proc.wait() == 0
    obs = await observed(daemon, uuid, "running", mark)
    assert obs.change_time in change_times(sim, uuid, "running")


async def test_full_sync_on_start_and_on_request(
    daemon: DaemonSide, make_agent: AgentFactory, sim: Sim
) -> None:
    a = await sim.create("kvm", "running", hostname="a.example.com")
    b = await sim.create("joyent", "stopped", hostname="b.example.com")
    await sim.ctl("iso-add", "debian-12.iso")
    await make_agent(sim_backend(sim), sim=sim)
    first = await daemon.wait(FullSync)
    assert first.node == "node1"
    assert {(o.uuid, o.state) for o in first.vms} == {(a, "running"), (b, "stopped")}
    assert all(o.change_time == first.time for o in first.vms)
    assert {o.vm["hostname"] for o in first.vms if o.vm} == {"a.example.com", "b.example.com"}
    assert first.isos == ("debian-12.iso",)

    await sim.ctl("crash", a)
    mark = len(daemon.received)
    await daemon.sync_request("daemon takeover")
    second = await daemon.wait(FullSync, after=mark)
    assert second.time > first.time
    assert {(o.uuid, o.state) for o in second.vms} == {(a, "stopped"), (b, "stopped")}


async def test_heartbeats_and_the_iso_list(
    daemon: DaemonSide, make_agent: AgentFactory, sim: Sim
) -> None:
    running = await make_agent(sim_backend(sim), sim=sim, heartbeat_interval=0.2)
    await daemon.wait(FullSync)
    first = await daemon.wait(Heartbeat)
    mark = len(daemon.received)
    second = await daemon.wait(Heartbeat, after=mark)
    assert (first.node, first.interval) == ("node1", 0.2)
    assert second.time > first.time and second.started == first.started
    assert first.started == running.agent.started
    assert not daemon.of(IsoList)  # nothing changed since the full sync

    await sim.ctl("iso-add", "win2022.iso")
    await sim.ctl("iso-add", "debian-12.iso")
    isos = await daemon.wait(IsoList, lambda i: len(i.isos) == 2)
    assert isos.isos == ("debian-12.iso", "win2022.iso")
    await sim.ctl("iso-remove", "win2022.iso")
    await daemon.wait(IsoList, lambda i: i.isos == ("debian-12.iso",))
    # ...and it is not repeated while it stays the same.
    sent = len(daemon.of(IsoList))
    await daemon.wait(Heartbeat, after=len(daemon.received))
    await daemon.wait(Heartbeat, after=len(daemon.received))
    assert len(daemon.of(IsoList)) == sent


async def test_full_sync_after_a_broker_reconnect(
    daemon: DaemonSide, make_agent: AgentFactory, sim: Sim, amqp_proxy: TcpProxy,
    amqp_vhost: str, bus_settings: Callable[..., BusSettings],
) -> None:
    uuid = await sim.create("kvm", "running", hostname="web01.example.com")
    user = agent_user(NODE)
    settings = bus_settings(user, url=amqp_proxy.url(user, user, amqp_vhost),
                            connection_name="test-agent-proxied")
    running = await make_agent(sim_backend(sim), sim=sim, bus=settings)
    await daemon.wait(FullSync)
    mark = len(daemon.received)
    assert amqp_proxy.cut() == 1
    after = await daemon.wait(FullSync, after=mark)
    assert [o.uuid for o in after.vms] == [uuid]
    assert running.agent.bus.reconnects == 1
    # Tasks still flow on the new connection.
    r = await daemon.run(uuid, "current", hostname="web01.example.com")
    assert r.outcome.state == "running"
    assert running.agent.metrics.broker_reconnects._value.get() == 1
    # Stopped here, while the proxy still runs (fixtures are torn down in reverse order).
    assert await running.stop() == 0
