"""A start from an ISO as SmartOS needs it, and `REQ_ID` on every call: the driver against the
real simulator (`vmd-vmadm`, `vmd-zonecfg`), through the local and the SSH runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmd.model import NodeName, OutcomeKind
from vmd.node_agent.driver import PowerCall, SshRunner, Vmadm

from .conftest import VMADM, ZONECFG, DriverFactory, Sim, SshNode, needs_sim

pytestmark = needs_sim

S, N, X = OutcomeKind.SUCCESS, OutcomeKind.NOOP, OutcomeKind.FAILURE
H = "web01.example.com"
TASK = "0-a2327793-2600-423d-9f07"


async def _calls(sim: Sim, uuid: str) -> list[str]:
    return (await sim.ctl("calls", "--req-id", uuid)).splitlines()


async def _get(sim: Sim, uuid: str) -> dict[str, object]:
    return json.loads(await sim.ctl("dump"))["vms"][uuid]  # type: ignore[no-any-return]


def _placeholder(sim: Sim, uuid: str, name: str) -> Path:
    return sim.root / "zones" / uuid / "root" / "iso" / name


async def test_kvm_start_from_iso_prepares_the_zone_once(
    make_driver: DriverFactory, sim: Sim
) -> None:
    vmadm = (await make_driver()).for_task(TASK)
    await sim.ctl("iso-add", "install.iso")
    await sim.ctl("iso-add", "drivers.iso")
    u = await sim.create("kvm", "stopped", hostname=H)
    started = await vmadm.start(PowerCall(u, "kvm", hostname=H, cdimage="install.iso",
                                          cdimage2="drivers.iso"))
    assert started.kind is S, started
    special = str(sim.iso_dir)
    assert await _calls(sim, u) == [
        f"REQ_ID={TASK} get {u} -> exit 0",
        f"REQ_ID={TASK} zonecfg -z {u} info fs -> exit 0",
        f"REQ_ID={TASK} zonecfg -z {u} add fs; set dir=/iso; set special={special}; "
        "set type=lofs; add options [ro,nodevices]; end -> exit 0",
        f"REQ_ID={TASK} start {u} order=c,once=d cdrom=/iso/install.iso,ide "
        "cdrom=/iso/drivers.iso,ide -> exit 0",
    ]
    vm = await _get(sim, u)
    assert vm["filesystems"] == [{"target": "/iso", "source": special, "type": "lofs",
                                  "options": ["ro", "nodevices"]}]
    for name in ("install.iso", "drivers.iso"):
        assert _placeholder(sim, u, name).is_file()
    # Once the zone runs, the mount covers the placeholders: the guest reads the real images.
    last = json.loads(await sim.ctl("last-start", u))
    assert [cd["image"] for cd in last["cdroms"]] == [
        str(sim.iso_dir / "install.iso"), str(sim.iso_dir / "drivers.iso")]

    assert (await vmadm.stop(PowerCall(u, "kvm", force=True))).kind is S
    before = _placeholder(sim, u, "install.iso").stat().st_mtime_ns
    mark = len(await _calls(sim, u))
    again = await vmadm.start(PowerCall(u, "kvm", hostname=H, cdimage="install.iso"))
    assert again.kind is S, again
    assert [c.split(" -> ")[0].split()[1] for c in (await _calls(sim, u))[mark:]] == [
        "get", "zonecfg", "start"]  # only `info fs`: no second mount, no touch
    assert _placeholder(sim, u, "install.iso").stat().st_mtime_ns == before


async def test_bhyve_start_from_iso_is_prepared_too(make_driver: DriverFactory, sim: Sim) -> None:
    vmadm = (await make_driver()).for_task(TASK)
    await sim.ctl("iso-add", "install.iso")
    u = await sim.create("bhyve", "stopped", hostname=H)
    assert (await vmadm.start(PowerCall(u, "bhyve", hostname=H, cdimage="install.iso"))).kind is S
    steps = [c.split(" -> ")[0].split()[1:3] for c in await _calls(sim, u)]
    assert steps == [["get", u], ["zonecfg", "-z"], ["zonecfg", "-z"], ["update", u],
                     ["start", u], ["update", u]]
    last = json.loads(await sim.ctl("last-start", u))
    assert last["cdroms"] == [{"path": "/iso/install.iso", "model": "ahci-cd",
                               "image": str(sim.iso_dir / "install.iso")}]
    restored = await vmadm.get(u)
    assert restored is not None and "ahci-cd" not in str(restored.get("bhyve_extra_opts", ""))


async def test_a_failed_preparation_is_the_start_failure(
    make_driver: DriverFactory, sim: Sim
) -> None:
    vmadm = (await make_driver()).for_task(TASK)
    await sim.ctl("iso-add", "install.iso")
    u = await sim.create("kvm", "stopped", hostname=H)
    text = f"{u}: Could not add fs: insufficient privileges"
    await sim.ctl("fault", u, "fail_next=" + json.dumps([{"cmd": "zonecfg", "stderr": text,
                                                          "exit": 1, "times": 2}]))
    out = await vmadm.start(PowerCall(u, "kvm", hostname=H, cdimage="install.iso"))
    assert (out.kind, out.returncode) == (X, 1)
    assert out.message == (f"preparing the ISO: zonecfg -z {H} info fs failed (exit 1): "
                           f"{H}: Could not add fs: insufficient privileges")
    assert not [c for c in await _calls(sim, u) if " start " in c]
    assert await vmadm.state(u) == "stopped"
    assert not _placeholder(sim, u, "install.iso").exists()


async def test_an_iso_missing_on_the_node_fails_before_vmadm(
    make_driver: DriverFactory, sim: Sim
) -> None:
    vmadm = await make_driver()
    u = await sim.create("kvm", "stopped", hostname=H)
    out = await vmadm.start(PowerCall(u, "kvm", hostname=H, cdimage="absent.iso",
                                      cdimage_once=False))
    assert (out.kind, out.returncode) == (X, 1)
    assert out.message == f"ISO image absent.iso is not available on the node ({sim.iso_dir})"
    assert [c.split()[1] for c in await _calls(sim, u)] == ["get"]  # no zonecfg, no start
    assert await vmadm.state(u) == "stopped"


async def test_a_running_vm_is_not_prepared(make_driver: DriverFactory, sim: Sim) -> None:
    vmadm = await make_driver()
    await sim.ctl("iso-add", "install.iso")
    u = await sim.create("kvm", "running", hostname=H)
    out = await vmadm.start(PowerCall(u, "kvm", hostname=H, cdimage="install.iso"))
    assert (out.kind, out.returncode) == (N, 0)
    assert [c.split(" -> ")[0].split()[1] for c in await _calls(sim, u)] == ["get", "start"]


async def test_the_agents_own_calls_carry_sync_ids(make_driver: DriverFactory, sim: Sim) -> None:
    vmadm = await make_driver()
    u = await sim.create("kvm", "stopped", hostname=H)
    await vmadm.listing()
    await vmadm.get(u)
    stream = await vmadm.events_stream()
    try:
        assert json.loads(await stream.readline())["type"] == "ready"
    finally:
        await stream.close()
    await vmadm.for_task(TASK).stop(PowerCall(u, "kvm"))
    lines = (await sim.ctl("calls", "--req-id")).splitlines()
    ids = [line.split()[0].removeprefix("REQ_ID=") for line in lines]
    assert [line.split()[1] for line in lines] == ["lookup", "get", "events", "stop"]
    assert all(i.startswith("vmd-sync-") for i in ids[:3]) and len(set(ids[:3])) == 3
    assert ids[3] == TASK


async def test_over_ssh_req_id_is_a_leading_assignment(
    tmp_path: Path, sim: Sim, ssh_node: SshNode
) -> None:
    await sim.ctl("iso-add", "install.iso")
    u = await sim.create("kvm", "stopped", hostname=H)
    runner = SshRunner(ssh_node.settings())
    vmadm = Vmadm(runner, node=NodeName("cn1"), vmadm=[str(VMADM)], iso_dir=str(sim.iso_dir),
                  zonecfg=[str(ZONECFG)]).for_task(TASK)
    try:
        assert (await vmadm.start(PowerCall(u, "kvm", cdimage="install.iso"))).kind is S
    finally:
        await runner.aclose()
    root = sim.root / "zones" / u / "root" / "iso"
    assert ssh_node.commands == [
        f"REQ_ID={TASK} {VMADM} get {u}",
        f"REQ_ID={TASK} ls -1 -p -- {sim.iso_dir}",
        f"REQ_ID={TASK} {ZONECFG} -z {u} info fs",
        f"REQ_ID={TASK} {ZONECFG} -z {u} 'add fs; set dir=/iso; set special={sim.iso_dir}; "
        "set type=lofs; add options [ro,nodevices]; end'",
        f"REQ_ID={TASK} ls -1 -p -- {root}",
        f"REQ_ID={TASK} mkdir -p -- {root}",
        f"REQ_ID={TASK} touch -- {root}/install.iso",
        f"REQ_ID={TASK} {VMADM} start {u} order=c,once=d cdrom=/iso/install.iso,ide",
    ]


@pytest.mark.parametrize("zonepath", ["relative/path", "/zones/x; rm -rf /", "/zones/../etc"])
async def test_an_unusable_zonepath_prepares_nothing(
    make_driver: DriverFactory, sim: Sim, zonepath: str
) -> None:
    vmadm = await make_driver()
    await sim.ctl("iso-add", "install.iso")
    u = await sim.create("kvm", "stopped", hostname=H)
    await sim.ctl("set", u, f"zonepath={zonepath}")
    out = await vmadm.start(PowerCall(u, "kvm", cdimage="install.iso"))
    assert out.kind is X and "invalid zonepath" in out.message  # before any command ran
    assert [c.split()[1] for c in await _calls(sim, u)] == ["get"]  # no zonecfg, no start


async def test_a_mount_at_iso_from_elsewhere_is_left_alone(
    make_driver: DriverFactory, sim: Sim
) -> None:
    vmadm = await make_driver()
    await sim.ctl("iso-add", "install.iso")
    u = await sim.create("kvm", "stopped", hostname=H)
    other = sim.root / "other"
    other.mkdir()
    await sim.ctl("set", u, "filesystems=" + json.dumps(
        [{"target": "/iso", "source": str(other), "type": "lofs", "options": ["ro"]}]))
    assert (await vmadm.start(PowerCall(u, "kvm", cdimage="install.iso"))).kind is S
    assert "add fs" not in " ".join(await _calls(sim, u))
    assert (await _get(sim, u))["filesystems"][0]["source"] == str(other)
    # The guest would see the other directory, which has no such image.
    assert json.loads(await sim.ctl("last-start", u))["cdroms"][0]["image"] is None
