"""The SSH transport end to end: an asyncssh server on 127.0.0.1 that executes the simulator,
the agent (in-process and as `vmd agent`) reaching it with strict host key checking."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncssh
import pytest

from vmd.bus import FullSync, ObservationReport
from vmd.model import OutcomeKind
from vmd.node_agent.driver import SshRunner, Vmadm
from vmd.node_agent.driver.backend import Opened

from .conftest import (
    NODE,
    VMADM,
    AgentFactory,
    AgentProcess,
    DaemonSide,
    Sim,
    SshNode,
    calls,
    write_config,
)

H = "web01.example.com"


@pytest.fixture
async def ssh_node(tmp_path: Path, sim: Sim) -> AsyncIterator[SshNode]:
    node = SshNode(tmp_path, sim.env, frozenset({str(VMADM), "ls"}))
    await node.start()
    yield node
    await node.stop()


async def test_tasks_and_observations_over_ssh(
    daemon: DaemonSide, make_agent: AgentFactory, sim: Sim, ssh_node: SshNode
) -> None:
    uuid = await sim.create("kvm", "stopped", hostname=H)
    await sim.ctl("iso-add", "debian-12.iso")
    runner = SshRunner(ssh_node.settings())
    opened = Opened(Vmadm(runner, node=NODE, vmadm=[str(VMADM)], iso_dir=str(sim.iso_dir)),
                    runner.aclose, runner)
    running = await make_agent(opened, sim=sim, transport="ssh")
    sync = await daemon.wait(FullSync)
    assert [(o.uuid, o.state) for o in sync.vms] == [(uuid, "stopped")]
    assert sync.isos == ("debian-12.iso",)

    r = await daemon.run(uuid, "start", hostname=H, update=True,
                         definition={"alias": "over-ssh"})
    assert r.outcome.kind is OutcomeKind.SUCCESS
    assert r.outcome.message == f"Successfully started VM {H}"
    assert r.outcome.definition is not None and r.outcome.definition["alias"] == "over-ssh"

    mark = len(daemon.received)
    await sim.ctl("crash", uuid)
    await daemon.wait(ObservationReport, lambda rep: any(
        o.uuid == uuid and o.state == "stopped" for o in rep.observations), after=mark)
    assert [x.split()[0] for x in await calls(sim, uuid)] == ["update", "get", "start"]
    assert ssh_node.max_active >= 2  # the events stream beside the commands
    assert await running.stop() == 0


async def test_a_rejected_host_key_stops_the_agent_with_one_line(
    tmp_path: Path, amqp_url: str, sim: Sim, ssh_node: SshNode,
    agent_process: Callable[..., AgentProcess],
) -> None:
    impostor = asyncssh.generate_private_key("ssh-ed25519")
    ssh = ssh_node.settings(known_hosts_key=impostor)
    config = write_config(tmp_path / "agent.toml", amqp_url, {
        "node": NODE, "vmadm": [str(VMADM)], "iso_dir": str(sim.iso_dir),
        "transport": "ssh", "metrics": "127.0.0.1:0", "state_dir": str(tmp_path / "state"),
        "heartbeat_interval": 0.5,
    }, ssh={"host": ssh.host, "port": ssh.port, "username": ssh.username,
            "client_keys": [str(k) for k in ssh.client_keys],
            "known_hosts": str(ssh.known_hosts)})
    agent = agent_process(config)
    await agent.start()
    assert await agent.wait(30) == 2
    errors = [json.loads(line) for line in agent.stdout().splitlines()
              if line.startswith("{") and json.loads(line)["level"] == "error"]
    assert len(errors) == 1, errors
    assert "host key not accepted" in errors[0]["event"]
    assert str(ssh.known_hosts) in errors[0]["event"]
    assert "exception" not in errors[0]
    assert not ssh_node.pids  # nothing ran on the node
