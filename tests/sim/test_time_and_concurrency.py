"""Concurrent processes on one node, the time scale (including 0) and moving time forward."""

from __future__ import annotations

import json
import time

import pytest

from .conftest import Node


@pytest.mark.parametrize("brand", ["kvm", "bhyve", "joyent", "lx"])
def test_blocking_stop_returns_when_another_process_crashes_the_vm(node: Node, brand: str) -> None:
    slow = node.at_scale(0.1)  # deadlines of 6 s (OS) and 18 s (HVM) are far away
    uuid = slow.create(brand, "running")
    slow.fault(uuid, guest_honors_shutdown=False)
    proc = slow.popen("stop", uuid)
    deadline = time.monotonic() + 20
    while slow.get(uuid)["autoboot"] is not False:  # the stop is under way
        assert time.monotonic() < deadline
        time.sleep(0.01)
    slow.ok("crash", uuid, "--exit-status", "-11")
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (0, f"Successfully completed stop for VM {uuid}\n")
    vm = slow.get(uuid)
    assert vm["state"] == "stopped"
    assert vm["exit_status"] == -11  # the crash stopped it, not the forced halt


def test_concurrent_commands_on_many_vms_keep_the_journal_consistent(node: Node) -> None:
    uuids = [node.create("kvm" if i % 2 else "joyent", "stopped") for i in range(6)]
    procs = [node.popen("start", u) for u in uuids]
    procs += [node.popen("list", "-p") for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    for u in uuids:
        assert node.get(u)["state"] == "running"
    seqs = [ev["seq"] for ev in node.journal()]
    assert seqs == list(range(1, len(seqs) + 1))


def test_timescale_zero_runs_everything_at_once(node: Node) -> None:
    zero = node.at_scale(0.0)
    stream = zero.events("-jr")
    stream.next_json()
    for brand in ("kvm", "bhyve", "joyent", "lx"):
        uuid = zero.create(brand, "stopped")
        zero.fault(uuid, guest_honors_shutdown=False)
        assert zero.vmadm("start", uuid).rc == 0
        assert zero.vmadm("reboot", "-F", uuid).rc == 0
        assert zero.vmadm("stop", uuid).rc == 0  # the forced halt is due at once
        assert zero.get(uuid)["state"] == "stopped"
        stream.until(lambda e, u=uuid: e["uuid"] == u and e["vm"]["state"] == "stopped")
    uuid = zero.create("kvm", "stopped")
    zero.fault(uuid, boot_hang=True)
    r = zero.vmadm("start", uuid)  # the 300 s failsafe is 0 s: fails, no deadlock
    assert r.rc == 1
    assert "timeout exceeded" in r.last
    assert stream.stop() == ""


def test_stop_with_timeout_scales(node: Node) -> None:
    uuid = node.create("kvm", "running")
    node.fault(uuid, guest_honors_shutdown=False)
    durations = {}
    for t in (5, 50):
        started = time.monotonic()
        assert node.vmadm("stop", uuid, "-t", str(t)).rc == 0
        durations[t] = time.monotonic() - started
        assert node.vmadm("start", uuid).rc == 0
    assert durations[5] >= 5 * node.scale
    assert durations[50] >= 50 * node.scale


def test_advance_moves_simulated_time(node: Node) -> None:
    real = node.at_scale(1.0)  # an OS zone ignoring shutdown: 60 real seconds
    uuid = real.create("joyent", "running")
    real.fault(uuid, guest_honors_shutdown=False)
    proc = real.popen("stop", uuid)
    deadline = time.monotonic() + 20
    while real.get(uuid)["autoboot"] is not False:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    steps = json.loads(real.ok("dump"))["schedule"]
    assert [s["label"] for s in steps] == ["forced halt (vmadm)"]
    assert steps[0]["due_in"] > 30
    real.ok("advance", "61")
    _, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (0, f"Successfully completed stop for VM {uuid}\n")


def test_settle_applies_due_steps(node: Node) -> None:
    uuid = node.create("joyent", "running")
    node.fault(uuid, guest_honors_shutdown=False)
    proc = node.popen("stop", uuid, "-t", "1")  # rejected for an OS zone: no steps
    proc.communicate(timeout=30)
    assert proc.returncode == 1
    node.ok("guest-reboot", uuid)
    node.ok("advance", "5")  # boot_seconds is 1: the reboot completes
    assert node.get(uuid)["zone_state"] == "running"
