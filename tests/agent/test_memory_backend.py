"""The memory backend ("for benchmarks and demos") behind the real agent and the real broker:
a deterministic inventory, a start/stop round trip, observations of out-of-band changes."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from vmd.bus import FullSync, ObservationReport, TaskResult
from vmd.model import JsonObject, NodeName, OutcomeKind, VmUuid
from vmd.node_agent.driver.memory import MemoryNode, owner_uuid

from .conftest import (
    NODE,
    AgentFactory,
    AgentProcess,
    DaemonSide,
    memory_backend,
    write_config,
)


async def test_inventory_round_trip_and_observations(
    daemon: DaemonSide, make_agent: AgentFactory
) -> None:
    mem, opened = memory_backend(vms=12, owners=3)
    await make_agent(opened)
    sync = await daemon.wait(FullSync)
    assert len(sync.vms) == 12
    by_host = {o.vm["hostname"]: o for o in sync.vms if o.vm is not None}
    first = by_host["node1-vm0001.example.com"]
    assert first.state == "running" and first.vm is not None
    assert first.vm["brand"] == "kvm" and first.vm["alias"] == "vm0001"
    owners = {o.vm["owner_uuid"] for o in sync.vms if o.vm is not None}
    assert owners == {owner_uuid(j) for j in range(3)}
    assert sync.isos == ("debian-12.iso",)

    uuid = first.uuid
    stop = await daemon.run(uuid, "stop", hostname="node1-vm0001.example.com")
    assert stop.outcome.kind is OutcomeKind.SUCCESS
    assert stop.outcome.message == "Successfully completed stop for VM node1-vm0001.example.com"
    again = await daemon.run(uuid, "stop", hostname="node1-vm0001.example.com")
    assert again.outcome.kind is OutcomeKind.NOOP
    start = await daemon.run(uuid, "start", hostname="node1-vm0001.example.com")
    assert start.outcome.kind is OutcomeKind.SUCCESS
    assert mem.calls.count(f"stop {uuid}") == 2 and mem.calls.count(f"start {uuid}") == 1

    mark = len(daemon.received)
    mem.crash(uuid)
    report = await daemon.wait(
        ObservationReport, lambda r: any(o.uuid == uuid and o.state == "stopped"
                                         for o in r.observations), after=mark)
    assert report.node == NODE
    gone = mem.create(hostname="new.example.com")
    mem.destroy(gone)
    await daemon.wait(ObservationReport, lambda r: any(o.uuid == gone and o.state is None
                                                       for o in r.observations), after=mark)
    results = daemon.of(TaskResult)
    assert len(results) == 3


async def test_seed_is_deterministic() -> None:
    def key(listing: dict[VmUuid, JsonObject]) -> dict[VmUuid, tuple[object, ...]]:
        return {u: (v["hostname"], v["brand"], v["owner_uuid"], v["state"])
                for u, v in listing.items()}

    a, b = await MemoryNode(NODE).listing(), await MemoryNode(NODE).listing()
    assert key(a) == key(b) and len(a) == 100
    other = await MemoryNode(NodeName("node2.example.com")).listing()
    hosts = sorted(v["hostname"] for v in other.values())
    assert hosts[0] == "node2-vm0001.example.com" and hosts[-1] == "node2-vm0100.example.com"
    assert not set(a) & set(other)


async def test_vmd_agent_with_the_memory_backend(
    tmp_path: Path, amqp_url: str, daemon: DaemonSide,
    agent_process: Callable[..., AgentProcess],
) -> None:
    config = write_config(tmp_path / "agent.toml", amqp_url, {
        "node": NODE, "backend": "memory", "metrics": "127.0.0.1:0",
        "state_dir": str(tmp_path / "state"), "heartbeat_interval": 0.5,
    })
    with config.open("a") as fh:
        fh.write('[agent.memory]\nvms = 5\nowners = 2\nstop_seconds = 0.2\nisos = []\n')
    agent = agent_process(config)
    await agent.start()
    sync = await daemon.wait(FullSync)
    assert len(sync.vms) == 5 and sync.isos == ()
    vm = next(o for o in sync.vms if o.state == "running" and o.vm is not None)
    assert vm.vm is not None
    r = await daemon.run(vm.uuid, "stop", hostname=vm.vm["hostname"], force=False, timeout=0)
    assert r.outcome.kind is OutcomeKind.SUCCESS
    states = [o.state for rep in daemon.of(ObservationReport) for o in rep.observations
              if o.uuid == vm.uuid]
    assert states == ["stopping", "stopped"]
    agent.signal(signal.SIGTERM)
    assert await agent.wait(30) == 0


def test_a_vmadm_agent_never_loads_the_memory_backend() -> None:
    """memory.py stays in the product only because `vmd agent` must build it from settings
    (its docstring); an agent configured for vmadm does not even import it."""
    code = ("import sys\n"
            "from vmd import config\n"
            "from vmd.cli import agent_cmd\n"
            "from vmd.node_agent.driver.backend import open_backend\n"
            "s = config.AgentSettings(node='cn1.example.com', state_dir='/tmp')\n"
            "open_backend(s)\n"
            "print('vmd.node_agent.driver.memory' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
