"""The driver against the real simulator executable, through the local and the SSH runner."""

from __future__ import annotations

import asyncio
import json
import uuid as uuidlib

import pytest

from vmd.model import OutcomeKind, TaskOutcome
from vmd.node_agent.driver import PowerCall, ValidationError

from .conftest import DriverFactory, Sim, alive, children, group_members, needs_sim, wait_for

pytestmark = needs_sim

S, N, F, X = OutcomeKind.SUCCESS, OutcomeKind.NOOP, OutcomeKind.NOT_FOUND, OutcomeKind.FAILURE
H = "web01.example.com"


async def test_start_stop_and_noops(make_driver: DriverFactory, sim: Sim) -> None:
    vmadm = await make_driver()
    u = await sim.create("kvm", "stopped", hostname=H)
    assert await vmadm.start(PowerCall(u, "kvm", hostname=H)) == TaskOutcome(
        S, 0, f"Successfully started VM {H}")
    assert await vmadm.state(u) == "running"
    again = await vmadm.start(PowerCall(u, "kvm", hostname=H))
    assert (again.kind, again.returncode) == (N, 0)
    assert again.message == f"Unable to start VM {H}: VM {H} is already 'running'"
    assert await vmadm.stop(PowerCall(u, "kvm", hostname=H)) == TaskOutcome(
        S, 0, f"Successfully completed stop for VM {H}")
    stopped = await vmadm.stop(PowerCall(u, "kvm", hostname=H))
    assert (stopped.kind, stopped.returncode) == (N, 0)
    assert stopped.message == f"VM {H} is already not 'running' (currently: stopped)"
    assert await vmadm.state(u) == "stopped"
    current = await vmadm.current(u, hostname=H)
    assert (current.kind, current.state) == (S, "stopped")


async def test_reboot_running_and_stopped(make_driver: DriverFactory, sim: Sim) -> None:
    vmadm = await make_driver()
    u = await sim.create("joyent", "running", hostname=H)
    assert await vmadm.reboot(u, hostname=H) == TaskOutcome(
        S, 0, f"Successfully completed reboot for VM {H}")
    assert (await vmadm.stop(PowerCall(u, "joyent", force=True, hostname=H))).kind is S
    failed = await vmadm.reboot(u, hostname=H)
    assert (failed.kind, failed.returncode) == (X, 1)
    assert "Cannot reboot vm from state" in failed.message


async def test_force_stop_of_stopped_vm_is_a_noop(make_driver: DriverFactory, sim: Sim) -> None:
    vmadm = await make_driver()
    u = await sim.create("kvm", "stopped", hostname=H)
    outcome = await vmadm.stop(PowerCall(u, "kvm", force=True, hostname=H))
    assert outcome.kind is N
    assert "is already not 'running'" in outcome.message


async def test_unknown_vm_is_not_found(make_driver: DriverFactory, sim: Sim) -> None:
    vmadm = await make_driver()
    await sim.create("kvm", "stopped")  # the node has VMs, just not this one
    u = str(uuidlib.uuid4())
    assert (await vmadm.start(PowerCall(u, "kvm"))).kind is F
    assert (await vmadm.stop(PowerCall(u, "kvm"))).kind is F
    assert (await vmadm.stop(PowerCall(u, "kvm", force=True))).kind is F
    assert (await vmadm.update(u, {"alias": "x"})).kind is F
    assert await vmadm.get(u) is None
    assert await vmadm.state(u) is None
    current = await vmadm.current(u, hostname=H)
    assert (current.kind, current.state) == (F, None)


async def test_zone_stop_never_passes_t(make_driver: DriverFactory, sim: Sim) -> None:
    vmadm = await make_driver()
    u = await sim.create("joyent", "running", hostname=H)
    assert (await vmadm.stop(PowerCall(u, "joyent", timeout=30, hostname=H))).kind is S
    calls = await sim.ctl("calls", u)
    assert f"stop {u} -> exit 0" in calls
    assert "-t" not in calls


async def test_hvm_stop_passes_t(make_driver: DriverFactory, sim: Sim) -> None:
    vmadm = await make_driver()
    u = await sim.create("kvm", "running", hostname=H)
    assert (await vmadm.stop(PowerCall(u, "kvm", timeout=30, hostname=H))).kind is S
    assert f"stop {u} -t 30 -> exit 0" in await sim.ctl("calls", u)


async def test_update_with_json_on_stdin(make_driver: DriverFactory, sim: Sim) -> None:
    vmadm = await make_driver()
    u = await sim.create("kvm", "stopped", hostname=H)
    assert await vmadm.update(u, {"alias": "renamed"}, hostname=H) == TaskOutcome(
        S, 0, f"Successfully updated VM {H}")
    vm = await vmadm.get(u)
    assert vm is not None and vm["alias"] == "renamed"


async def test_listing_and_isos(make_driver: DriverFactory, sim: Sim) -> None:
    vmadm = await make_driver()
    a = await sim.create("kvm", "running", hostname="a.example.com", ostype="windows")
    b = await sim.create("joyent", "stopped", hostname="b.example.com")
    for name in ("a.iso", "b.iso", "bad,name.iso", "-F"):
        await sim.ctl("iso-add", name)
    listing = await vmadm.listing()
    assert set(listing) == {a, b}
    assert listing[a]["state"] == "running" and listing[b]["state"] == "stopped"
    assert listing[a]["hostname"] == "a.example.com" and listing[b]["brand"] == "joyent"
    assert listing[a]["internal_metadata"]["ostype"] == "windows"
    assert "owner_uuid" in listing[b]
    assert await vmadm.isos() == frozenset({"a.iso", "b.iso"})


async def test_timeout_kills_the_hung_vmadm(make_driver: DriverFactory, sim: Sim) -> None:
    vmadm = await make_driver()
    u = await sim.create("kvm", "running", hostname=H)
    await sim.ctl("fault", u, 'hang_next={"cmd": "stop"}')
    task = asyncio.ensure_future(vmadm.stop(PowerCall(u, "kvm", hostname=H, run_timeout=1.5)))
    await wait_for(lambda: bool(children(f"stop {u}")))
    [pid] = children(f"stop {u}")
    outcome = await task
    assert (outcome.kind, outcome.returncode) == (X, 124)
    assert outcome.message.startswith("vmadm stop web01.example.com did not finish within 1.5 s")
    await wait_for(lambda: not alive(pid), timeout=5)
    assert group_members(pid) == []


async def test_injected_failure_is_reported(make_driver: DriverFactory, sim: Sim) -> None:
    vmadm = await make_driver()
    u = await sim.create("kvm", "stopped", hostname=H)
    fail = [{"cmd": "start", "stderr": f"Unable to start VM {u}: out of memory", "exit": 1}]
    await sim.ctl("fault", u, f"fail_next={json.dumps(fail)}")
    assert await vmadm.start(PowerCall(u, "kvm", hostname=H)) == TaskOutcome(
        X, 1, f"Unable to start VM {H}: out of memory")
    with pytest.raises(ValidationError):
        await vmadm.start(PowerCall(u, "kvm", cdimage="../../etc/passwd"))
    assert "etc/passwd" not in await sim.ctl("calls", u)
