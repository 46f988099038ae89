"""The driver over SSH against the simulator: host keys, node loss, reconnects."""

from __future__ import annotations

import asyncssh
import pytest

from vmd.model import NodeName, OutcomeKind
from vmd.node_agent.driver import HostKeyRejected, PowerCall, SshRunner, Vmadm

from .conftest import VMADM, Sim, SshNode, needs_sim

pytestmark = needs_sim

H = "web01.example.com"


def driver(runner: SshRunner, sim: Sim) -> Vmadm:
    return Vmadm(runner, node=NodeName("cn1"), vmadm=[str(VMADM)], iso_dir=str(sim.iso_dir))


async def test_wrong_host_key_is_refused_and_nothing_runs(ssh_node: SshNode, sim: Sim) -> None:
    u = await sim.create("kvm", "stopped", hostname=H)
    other = asyncssh.generate_private_key("ssh-ed25519")
    vmadm = driver(SshRunner(ssh_node.settings(known_hosts_key=other)), sim)
    # A hard error, not a FAILURE outcome: the agent must not carry on with this node.
    with pytest.raises(HostKeyRejected):
        await vmadm.start(PowerCall(u, "kvm", hostname=H))
    with pytest.raises(HostKeyRejected):
        await vmadm.listing()
    assert ssh_node.pids == []
    assert "start" not in await sim.ctl("calls", u)


async def test_unreachable_node_is_a_failure_outcome(ssh_node: SshNode, sim: Sim) -> None:
    u = await sim.create("kvm", "stopped", hostname=H)
    vmadm = driver(SshRunner(ssh_node.settings()), sim)
    await ssh_node.stop()
    outcome = await vmadm.start(PowerCall(u, "kvm", hostname=H))
    assert (outcome.kind, outcome.returncode) == (OutcomeKind.FAILURE, 255)
    assert outcome.message.startswith("vmadm start web01.example.com: ssh root@127.0.0.1:")
    current = await vmadm.current(u, hostname=H)
    assert (current.kind, current.returncode, current.state) == (OutcomeKind.FAILURE, 255, None)
    await vmadm.runner.aclose()


async def test_connection_loss_then_reconnect_on_next_command(ssh_node: SshNode,
                                                               sim: Sim) -> None:
    u = await sim.create("kvm", "stopped", hostname=H)
    runner = SshRunner(ssh_node.settings())
    vmadm = driver(runner, sim)
    try:
        assert await vmadm.state(u) == "stopped"
        ssh_node.drop_connections()
        assert (await vmadm.start(PowerCall(u, "kvm", hostname=H))).kind is OutcomeKind.SUCCESS
        assert runner.reconnects == 1
        # And across a full server restart on the same port.
        await ssh_node.stop()
        await ssh_node.start()
        assert await vmadm.state(u) == "running"
        assert runner.reconnects == 2
    finally:
        await runner.aclose()
