"""start / stop / reboot / get: every text and exit code of vmadm (docs/driver.md, facts 1-5)."""

from __future__ import annotations

import pytest

from .conftest import MISSING, Node

U = "{u}"  # replaced by the VM's uuid in expected messages


@pytest.mark.parametrize(
    ("brand", "state", "args", "rc", "message"),
    [
        pytest.param("kvm", "stopped", ["start"], 0, "Successfully started VM {u}", id="start"),
        pytest.param("joyent", "stopped", ["boot"], 0, "Successfully started VM {u}", id="boot"),
        pytest.param(
            "kvm",
            "running",
            ["start"],
            0,
            "Unable to start VM {u}: VM {u} is already 'running'",
            id="start-running-noop",
        ),
        pytest.param(
            None,
            None,
            ["start"],
            1,
            "Unable to start VM {u}: bad statusCode: 404",
            id="start-unknown",
        ),
        pytest.param(
            "bhyve", "running", ["stop"], 0, "Successfully completed stop for VM {u}", id="stop"
        ),
        pytest.param(
            "lx", "running", ["halt"], 0, "Successfully completed stop for VM {u}", id="halt"
        ),
        pytest.param(
            "kvm",
            "stopped",
            ["stop"],
            0,
            "VM {u} is already not 'running' (currently: stopped)",
            id="stop-stopped-noop",
        ),
        pytest.param(None, None, ["stop"], 1, "VM {u} not found", id="stop-unknown"),
        pytest.param(
            "kvm", "running", ["stop", "-F"], 0, "Successfully completed stop for VM {u}", id="F"
        ),
        pytest.param(
            "kvm",
            "stopped",
            ["stop", "-F"],
            1,
            "first of 1 error: VM {u} is already not 'running' (currently: stopped)",
            id="F-stopped",
        ),
        pytest.param(None, None, ["stop", "-F"], 1, "bad statusCode: 404", id="F-unknown"),
        pytest.param(
            "joyent",
            "running",
            ["stop", "-t", "5"],
            1,
            "first of 1 error: Timeout option is only supported for bhyve, KVM and docker"
            " containers.",
            id="os-zone-rejects-t",
        ),
        pytest.param(
            "joyent-minimal",
            "stopped",
            ["stop", "-t", "5"],
            0,
            "VM {u} is already not 'running' (currently: stopped)",
            id="os-zone-stopped-t-noop-first",
        ),
        pytest.param(
            "bhyve",
            "running",
            ["stop", "-t", "5"],
            0,
            "Successfully completed stop for VM {u}",
            id="bhyve-t",
        ),
        pytest.param(
            "kvm", "running", ["reboot"], 0, "Successfully completed reboot for VM {u}", id="rb"
        ),
        pytest.param(
            "joyent",
            "running",
            ["reboot", "-t", "5"],
            0,
            "Successfully completed reboot for VM {u}",
            id="reboot-ignores-t",
        ),
        pytest.param(
            "kvm",
            "stopped",
            ["reboot"],
            1,
            'Cannot reboot vm from state "stopped", must be "running"',
            id="reboot-stopped",
        ),
        pytest.param(
            "bhyve",
            "stopped",
            ["reboot", "-F"],
            1,
            'Cannot reset vm from state "stopped", must be "running".',
            id="reset-stopped",
        ),
        pytest.param(
            "lx",
            "running",
            ["reboot", "-F"],
            0,
            "Successfully completed reboot for VM {u}",
            id="reset",
        ),
        pytest.param(None, None, ["reboot"], 1, "bad statusCode: 404", id="reboot-unknown"),
        pytest.param(
            None, None, ["get"], 1, "zoneadm: {u}: No such zone configured", id="get-unknown"
        ),
    ],
)
def test_messages_and_exit_codes(
    node: Node, brand: str | None, state: str | None, args: list[str], rc: int, message: str
) -> None:
    uuid = node.create(brand, state) if brand and state else MISSING
    cmd, *opts = args
    r = node.vmadm(cmd, uuid, *opts)
    assert r.rc == rc
    assert r.err == message.format(u=uuid) + "\n"
    assert r.out == ""


def test_start_blocks_until_running_and_sets_autoboot(node: Node) -> None:
    uuid = node.create("kvm", "stopped")
    assert node.get(uuid)["autoboot"] is False
    assert node.vmadm("start", uuid).rc == 0
    vm = node.get(uuid)
    assert (vm["state"], vm["zone_state"], vm["autoboot"]) == ("running", "running", True)
    assert {"pid", "boot_timestamp", "zoneid"} <= vm.keys()
    assert "exit_status" not in vm


def test_stop_blocks_until_stopped_and_clears_autoboot(node: Node) -> None:
    uuid = node.create("joyent", "running")
    assert node.vmadm("stop", uuid).rc == 0
    vm = node.get(uuid)
    assert (vm["state"], vm["zone_state"], vm["autoboot"]) == ("stopped", "installed", False)
    assert vm["exit_status"] == 0
    assert "exit_timestamp" in vm
    assert not {"pid", "boot_timestamp", "zoneid"} & vm.keys()


def test_stop_of_a_stopped_vm_still_clears_autoboot(node: Node) -> None:
    uuid = node.create("kvm", "running")
    node.ok("crash", uuid)
    assert node.get(uuid)["autoboot"] is True  # a crash leaves autoboot set
    r = node.vmadm("stop", uuid)
    assert (r.rc, r.last) == (0, f"VM {uuid} is already not 'running' (currently: stopped)")
    assert node.get(uuid)["autoboot"] is False


def test_os_zone_rejecting_t_has_already_cleared_autoboot(node: Node) -> None:
    uuid = node.create("lx", "running")
    assert node.vmadm("stop", uuid, "-t", "5").rc == 1
    vm = node.get(uuid)
    assert (vm["state"], vm["autoboot"]) == ("running", False)


def test_reboot_gives_a_new_boot(node: Node) -> None:
    for brand in ("kvm", "bhyve", "joyent", "lx"):
        uuid = node.create(brand, "running")
        before = node.get(uuid)
        assert node.vmadm("reboot", uuid).rc == 0, brand
        after = node.get(uuid)
        assert after["state"] == "running", brand
        assert after["pid"] != before["pid"], brand
        assert after["autoboot"] is True, brand


def test_reboot_of_os_zone_ignoring_shutdown_times_out(node: Node) -> None:
    uuid = node.create("joyent", "running")
    node.fault(uuid, guest_honors_shutdown=False)
    r = node.vmadm("reboot", uuid)
    assert (r.rc, r.last) == (1, "timed out waiting for zone to reboot")
    assert node.get(uuid)["state"] == "running"


def test_kvm_reset_changes_nothing_on_the_zone(node: Node) -> None:
    uuid = node.create("kvm", "running")
    before = node.get(uuid)
    events_before = len(node.journal())
    r = node.vmadm("reboot", "-F", uuid)
    assert (r.rc, r.last) == (0, f"Successfully completed reboot for VM {uuid}")
    assert len(node.journal()) == events_before
    assert node.get(uuid)["boot_timestamp"] == before["boot_timestamp"]
    assert '"reset_count": 1' in node.ok("dump")


def test_stop_force_clears_a_kvm_transition(node: Node) -> None:
    node = node.at_scale(0.05)  # the 180 s deadline is 9 s away
    uuid = node.create("kvm", "running")
    node.fault(uuid, guest_honors_shutdown=False)
    stopping = node.popen("stop", uuid)
    node.wait_state(uuid, "stopping")
    r = node.vmadm("stop", "-F", uuid)
    assert (r.rc, r.last) == (0, f"Successfully completed stop for VM {uuid}")
    vm = node.get(uuid)
    assert vm["state"] == "stopped"
    assert "transition_to" not in vm
    _, err = stopping.communicate(timeout=30)
    assert stopping.returncode == 0
    assert err == f"Successfully completed stop for VM {uuid}\n"


def test_start_from_a_failed_state_is_refused(node: Node) -> None:
    uuid = node.create("kvm", "stopped")
    node.ok("set", uuid, "failed=true")
    r = node.vmadm("start", uuid)
    assert (r.rc, r.last) == (
        1,
        f'Unable to start VM {uuid}: Cannot start vm from state "failed", must be "stopped".',
    )


def test_start_of_provisioning_installed_vm_is_allowed(node: Node) -> None:
    uuid = node.create("kvm", "stopped")
    node.ok("set", uuid, "provisioning=true")
    assert node.get(uuid)["state"] == "provisioning"
    assert node.vmadm("start", uuid).rc == 0


def test_get_and_json_print_the_object_without_fake_fields(node: Node) -> None:
    uuid = node.create("joyent", "running", ostype="linux")
    for cmd in ("get", "json"):
        r = node.vmadm(cmd, uuid)
        assert (r.rc, r.err) == (0, "")
        assert r.out.startswith('{\n  "uuid": ')  # pretty JSON, 2-space indent
        vm = node.get(uuid)
        assert "type" not in vm
        assert "ram" not in vm  # OS zones only have max_physical_memory
        for key in (
            "uuid",
            "zonename",
            "alias",
            "hostname",
            "brand",
            "owner_uuid",
            "state",
            "zone_state",
            "autoboot",
            "boot_timestamp",
            "pid",
            "last_modified",
            "max_physical_memory",
            "snapshots",
            "internal_metadata",
            "server_uuid",
        ):
            assert key in vm, key
        assert vm["internal_metadata"] == {"ostype": "linux"}


def test_hvm_vm_has_ram_and_disks(node: Node) -> None:
    vm = node.get(node.create("bhyve", "stopped", ram="2048"))
    assert vm["ram"] == 2048
    assert vm["hvm"] is True
    assert vm["disks"][0]["size"] > 0
    assert vm["state"] == "stopped"
    assert "exit_status" not in vm  # never ran
