"""`vmd-vmadm-ctl`: the world around the node, injected faults, the calls log, ISOs."""

from __future__ import annotations

import json
import time

import pytest

from .conftest import MISSING, Node


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["create", "--brand", "xen"], id="bad-brand"),
        pytest.param(["create", "--brand", "kvm", "--state", "paused"], id="bad-state"),
        pytest.param(["create", "--brand", "kvm", "--uuid", "nope"], id="bad-uuid"),
        pytest.param(["create", "--brand", "kvm", "--ostype", "beos"], id="bad-ostype"),
        pytest.param(["create", "--brand", "kvm", "--ram", "-5"], id="bad-ram"),
        pytest.param(["create", "--brand"], id="missing-value"),
        pytest.param(["create", "--brand", "kvm", "extra"], id="stray-arg"),
        pytest.param(["destroy", MISSING], id="destroy-unknown"),
        pytest.param(["crash", "x"], id="crash-no-uuid"),
        pytest.param(["fault", MISSING, "boot_seconds=1"], id="fault-unknown-vm"),
        pytest.param(["fault", "global", "nosuch=1"], id="unknown-knob"),
        pytest.param(["fault", "global", "guest_honors_shutdown=maybe"], id="knob-bool"),
        pytest.param(["fault", "global", "shutdown_seconds=-1"], id="knob-seconds"),
        pytest.param(["fault", "global", "stuck_state=gone"], id="knob-stuck"),
        pytest.param(["fault", "global", 'fail_next=[{"cmd":"get"}]'], id="fail-next-fields"),
        pytest.param(["fault", "global", 'hang_next="stop"'], id="hang-next-type"),
        pytest.param(["fault", "global", "boot_seconds"], id="not-key-value"),
        pytest.param(["iso-add", "../etc/passwd"], id="iso-dotdot"),
        pytest.param(["iso-add", "a/b.iso"], id="iso-slash"),
        pytest.param(["iso-remove", "absent.iso"], id="iso-remove-absent"),
        pytest.param(["advance", "soon"], id="advance-nan"),
        pytest.param(["set", MISSING, "alias=x"], id="set-unknown"),
        pytest.param(["calls", "not-a-uuid"], id="calls-bad"),
        pytest.param(["frobnicate"], id="unknown-command"),
    ],
)
def test_bad_input_is_one_line_exit_2(node: Node, args: list[str]) -> None:
    r = node.ctl(*args)
    assert r.rc == 2
    assert len(r.err.strip().splitlines()) == 1
    assert r.err.startswith("vmd-vmadm-ctl: ")
    assert "Traceback" not in r.err


def test_create_prints_the_uuid_and_emits_create(node: Node) -> None:
    out = node.ok(
        "create",
        "--brand",
        "kvm",
        "--alias",
        "a",
        "--hostname",
        "a.example.com",
        "--owner",
        MISSING,
        "--uuid",
        "11111111-2222-4333-8444-555555555555",
        "--ostype",
        "windows",
    )
    uuid = out.split()[-1]
    assert uuid == "11111111-2222-4333-8444-555555555555"
    ev = node.journal()[-1]
    assert (ev["type"], ev["uuid"], ev["vm"]["state"]) == ("create", uuid, "stopped")
    vm = node.get(uuid)
    assert (vm["hostname"], vm["owner_uuid"]) == ("a.example.com", MISSING)
    assert vm["internal_metadata"]["ostype"] == "windows"
    assert node.ctl("create", "--brand", "kvm", "--uuid", uuid).rc == 2  # exists already


def test_destroy_emits_delete(node: Node) -> None:
    uuid = node.create("joyent", "running")
    node.ok("destroy", uuid)
    assert node.journal()[-1] == {
        "type": "delete",
        "date": node.journal()[-1]["date"],
        "zonename": uuid,
        "uuid": uuid,
        "seq": node.journal()[-1]["seq"],
    }
    assert node.vmadm("get", uuid).rc == 1


def test_crash_and_guest_poweroff(node: Node) -> None:
    uuid = node.create("kvm", "running")
    node.ok("crash", uuid, "--exit-status", "139")
    vm = node.get(uuid)
    assert (vm["state"], vm["exit_status"], vm["autoboot"]) == ("stopped", 139, True)
    assert node.ctl("crash", uuid).rc == 2  # not running any more
    assert node.vmadm("start", uuid).rc == 0
    node.ok("guest-poweroff", uuid)
    vm = node.get(uuid)
    assert (vm["state"], vm["exit_status"], vm["autoboot"]) == ("stopped", 0, True)


def test_guest_reboot_gives_a_new_boot(node: Node) -> None:
    uuid = node.create("lx", "running")
    before = node.get(uuid)
    node.ok("guest-reboot", uuid, "--wait")
    after = node.get(uuid)
    assert after["state"] == "running"
    assert after["pid"] != before["pid"]
    zone_states = [
        c["newValue"]
        for ev in node.journal()
        if ev["uuid"] == uuid and ev["type"] == "modify"
        for c in ev["changes"]
        if c["path"] == ["zone_state"]
    ]
    assert zone_states == ["shutting_down", "down", "ready", "running"]


def test_fail_next_fails_without_side_effects(node: Node) -> None:
    uuid = node.create("kvm", "running")
    node.fault(
        uuid,
        fail_next=[
            {"cmd": "stop", "stderr": "first of 1 error: something broke", "exit": 1, "times": 2},
            {"cmd": "get", "stderr": "", "exit": 0, "stdout": "{}"},
        ],
    )
    before = len(node.journal())
    for _ in range(2):
        r = node.vmadm("stop", uuid)
        assert (r.rc, r.err) == (1, "first of 1 error: something broke\n")
    assert len(node.journal()) == before  # no autoboot change, nothing
    r = node.vmadm("json", uuid)  # "get" matches its alias too
    assert (r.rc, r.out) == (0, "{}\n")
    assert node.get(uuid)["state"] == "running"  # used up
    assert node.vmadm("halt", uuid).rc == 0


def test_global_fail_next_matches_any_vm_and_listing(node: Node) -> None:
    node.fault("global", fail_next={"cmd": "list", "stderr": "boom", "exit": 2})
    r = node.vmadm("list")
    assert (r.rc, r.err) == (2, "boom\n")
    assert node.vmadm("list").rc == 0


def test_hang_next_blocks_until_killed(node: Node) -> None:
    uuid = node.create("bhyve", "running")
    node.fault(uuid, hang_next={"cmd": "stop"})
    proc = node.popen("stop", uuid)
    deadline = time.monotonic() + 20
    while f"stop {uuid} -> running" not in node.ok("calls", uuid):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.2)
    assert proc.poll() is None
    proc.kill()
    proc.communicate()
    assert f"stop {uuid} -> killed" in node.ok("calls", uuid)
    vm = node.get(uuid)
    assert (vm["state"], vm["autoboot"]) == ("running", True)  # nothing happened
    assert node.vmadm("stop", uuid).rc == 0  # the hang was one-shot


def test_delay_next(node: Node) -> None:
    node.fault("global", delay_next={"cmd": "get", "seconds": 20})
    uuid = node.create("kvm", "running")
    started = time.monotonic()
    assert node.vmadm("get", uuid).rc == 0
    assert time.monotonic() - started >= 20 * node.scale


def test_boot_crash_still_reports_success(node: Node) -> None:
    uuid = node.create("kvm", "stopped")
    node.fault(uuid, boot_crash=True)
    r = node.vmadm("start", uuid)
    assert (r.rc, r.last) == (0, f"Successfully started VM {uuid}")
    node.wait_state(uuid, "stopped")
    vm = node.get(uuid)
    assert vm["exit_status"] != 0
    assert vm["autoboot"] is True


def test_boot_hang_fails_after_the_failsafe(node: Node) -> None:
    fast = node.at_scale(0.003)
    uuid = fast.create("bhyve", "stopped")
    fast.fault(uuid, boot_hang=True)
    r = fast.vmadm("start", uuid)
    assert r.rc == 1
    assert r.last == (
        f"Unable to start VM {uuid}: first of 1 error: vminfod watchForChanges"
        f' "VM.js startZone ({uuid})" timeout exceeded'
    )
    assert fast.get(uuid)["state"] == "ready"


def test_vmadmd_down(node: Node) -> None:
    uuid = node.create("kvm", "running")
    node.fault(uuid, vmadmd_down=True, guest_honors_shutdown=False)
    r = node.vmadm("stop", uuid, "-t", "1")
    assert (r.rc, r.last) == (
        1,
        'first of 1 error: Unable to post "stop" to vmadmd: connect ECONNREFUSED 127.0.0.1:8080',
    )
    other = node.create("kvm", "running")
    node.fault(other, vmadmd_down=True)
    r = node.vmadm("reboot", "-F", other)
    assert r.rc == 1
    assert r.last == (
        'first of 1 error: Unable to post "reset" to vmadmd: connect ECONNREFUSED 127.0.0.1:8080'
    )
    time.sleep(5 * node.scale)
    node.ok("settle")
    assert node.get(uuid)["state"] == "stopping"  # no vmadmd to act on the transition
    node.fault(uuid, vmadmd_down=None)  # vmadmd is back: it handles the expired transition
    node.wait_state(uuid, "stopped")


def test_slow_guest_shutdown_and_boot(node: Node) -> None:
    uuid = node.create("joyent", "running")
    node.fault(uuid, shutdown_seconds=30, boot_seconds=30)
    for cmd, floor in (("stop", 30), ("start", 30)):
        started = time.monotonic()
        assert node.vmadm(cmd, uuid).rc == 0
        assert time.monotonic() - started >= floor * node.scale


def test_cdrom_start_needs_the_iso_under_the_zone_root(node: Node) -> None:
    uuid = node.create("kvm", "stopped")
    args = ["start", uuid, "order=c,once=d", "cdrom=/iso/install.iso,ide"]
    missing = (1, f"Unable to start VM {uuid}: Cannot find disk: /iso/install.iso")
    r = node.vmadm(*args)
    assert (r.rc, r.last) == missing
    node.ok("iso-add", "install.iso")
    node.ok("iso-add", "drivers.iso")
    assert node.ok("iso-list").split() == ["drivers.iso", "install.iso"]
    # As on SmartOS: an image in the node's ISO directory is not enough, nor is the lofs
    # mount (mounted only while the zone runs): vmadm looks under the zone's root.
    assert (node.vmadm(*args).rc, node.vmadm(*args).last) == missing
    iso_dir = str(node.root / "iso")
    mount = f"add fs; set dir=/iso; set special={iso_dir}; set type=lofs; end"
    assert node.zonecfg("-z", uuid, mount).rc == 0
    assert (node.vmadm(*args).rc, node.vmadm(*args).last) == missing
    placeholders = node.root / "zones" / uuid / "root" / "iso"
    placeholders.mkdir()
    (placeholders / "install.iso").touch()
    (placeholders / "drivers.iso").touch()
    r = node.vmadm(*args, "cdrom=/iso/drivers.iso,ide")
    assert (r.rc, r.last) == (0, f"Successfully started VM {uuid}")
    last = json.loads(node.ok("last-start", uuid))
    assert last["boot"] == "order=c,once=d"
    # The guest reads what the mount shows over the placeholders.
    assert last["cdroms"] == [
        {"path": "/iso/install.iso", "model": "ide", "image": f"{iso_dir}/install.iso"},
        {"path": "/iso/drivers.iso", "model": "ide", "image": f"{iso_dir}/drivers.iso"},
    ]
    node.ok("iso-remove", "drivers.iso")
    assert node.ok("iso-list").split() == ["install.iso"]
    assert node.vmadm("stop", uuid).rc == 0
    r = node.vmadm("start", uuid, "cdrom=/iso/install.iso,floppy")
    assert r.last == (
        f'Unable to start VM {uuid}: "floppy" is not a valid disk model for kvm brand.'
        " Valid are: virtio,scsi,ide"
    )
    # Without a mount the guest would read the empty placeholder; with the image removed
    # from the ISO directory, nothing.
    assert node.vmadm("start", uuid, "cdrom=/iso/drivers.iso,ide").rc == 0
    assert json.loads(node.ok("last-start", uuid))["cdroms"][0]["image"] is None
    assert node.vmadm("stop", uuid).rc == 0
    assert node.vmadm("start", uuid).rc == 0
    assert json.loads(node.ok("last-start", uuid))["boot"] == "order=cd"  # the default


def test_bhyve_cdroms_come_from_extra_opts(node: Node) -> None:
    uuid = node.create("bhyve", "stopped")
    node.vmadm("update", uuid, stdin='{"bhyve_extra_opts": "-s 3:0,ahci-cd,/iso/x.iso"}')
    assert node.vmadm("start", uuid).rc == 0
    last = json.loads(node.ok("last-start", uuid))
    assert last["cdroms"] == [{"path": "/iso/x.iso", "model": "ahci-cd", "image": None}]
    assert last["options_effective"] is False


def test_calls_log(node: Node) -> None:
    a = node.create("kvm", "running")
    b = node.create("kvm", "stopped")
    node.vmadm("get", a)
    node.vmadm("stop", b)
    node.vmadm("start", b, "order=c")
    node.vmadm("list", "-p")
    assert node.ok("calls", b).splitlines() == [
        f"stop {b} -> exit 0",
        f"start {b} order=c -> exit 0",
    ]
    assert node.ok("calls").splitlines() == [
        f"get {a} -> exit 0",
        f"stop {b} -> exit 0",
        f"start {b} order=c -> exit 0",
        "list -p -> exit 0",
    ]


def test_set_raw_edits(node: Node) -> None:
    uuid = node.create("kvm", "stopped")
    node.ok("set", uuid, "failed=true")
    assert node.get(uuid)["state"] == "failed"
    node.ok("set", uuid, "failed=null", "transition=receiving:running:0")
    vm = node.get(uuid)
    assert (vm["state"], vm["transition_to"]) == ("receiving", "running")
    node.ok("set", uuid, "transition=null", "zone_state=running", "alias=edited")
    vm = node.get(uuid)
    assert (vm["state"], vm["alias"]) == ("running", "edited")
    assert "pid" in vm
    assert node.ctl("set", uuid, "state=running").rc == 2


def test_dump_and_vms(node: Node) -> None:
    uuid = node.create("kvm", "running", alias="dumped")
    node.fault(uuid, guest_honors_shutdown=False)
    dump = json.loads(node.ok("dump"))
    assert dump["vms"][uuid]["alias"] == "dumped"
    assert dump["vm_sim"][uuid]["knobs"] == {"guest_honors_shutdown": False}
    assert {"schedule", "recent_calls", "node", "timescale"} <= dump.keys()
    assert node.ok("vms").split() == [uuid, "kvm", "running", "dumped"]
