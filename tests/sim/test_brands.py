"""Brand differences of a stop (docs/driver.md, vmadm fact 5), deadlines, who owns a forced halt."""

from __future__ import annotations

import json
import time

import pytest

from .conftest import Node


def _until_autoboot_off(node: Node, uuid: str) -> None:
    """A stop has committed its plan once autoboot is false (same transaction)."""
    deadline = time.monotonic() + 20
    while node.get(uuid)["autoboot"] is not False:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _states_seen(node: Node, uuid: str, since: int) -> list[str]:
    seen = []
    for ev in node.journal()[since:]:
        if ev["uuid"] == uuid and ev["type"] == "modify":
            seen.extend(
                c["newValue"] for c in ev["changes"] if c["path"] == ["state"] and "newValue" in c
            )
    return seen


@pytest.mark.parametrize(
    ("brand", "shows_stopping"),
    [
        pytest.param("kvm", True, id="kvm"),
        pytest.param("bhyve", False, id="bhyve"),
        pytest.param("joyent", False, id="joyent"),
        pytest.param("joyent-minimal", False, id="joyent-minimal"),
        pytest.param("lx", False, id="lx"),
    ],
)
def test_graceful_stop_event_sequence(node: Node, brand: str, shows_stopping: bool) -> None:
    uuid = node.create(brand, "running")
    since = len(node.journal())
    r = node.vmadm("stop", uuid)
    assert (r.rc, r.last) == (0, f"Successfully completed stop for VM {uuid}")
    states = _states_seen(node, uuid, since)
    assert ("stopping" in states) is shows_stopping
    assert states[-1] == "stopped"
    changes = [c for ev in node.journal()[since:] for c in ev.get("changes", [])]
    zone_states = [c["newValue"] for c in changes if c["path"] == ["zone_state"]]
    assert zone_states == ["shutting_down", "down", "installed"]
    # autoboot goes false first, as its own change
    assert changes[0]["path"] == ["autoboot"]
    assert (changes[0]["oldValue"], changes[0]["newValue"]) == (True, False)


def test_kvm_stopping_carries_the_transition(node: Node) -> None:
    uuid = node.create("kvm", "running")
    node.fault(uuid, guest_honors_shutdown=False)
    before_ms = time.time() * 1000
    proc = node.popen("stop", uuid, "-t", "250")
    node.wait_state(uuid, "stopping")
    vm = node.get(uuid)
    assert (vm["zone_state"], vm["transition_to"]) == ("running", "stopped")
    # expire = now + 250 simulated seconds (2.5 s at scale 0.01), as epoch milliseconds
    assert before_ms < vm["transition_expire"] < before_ms + 250 * node.scale * 1000 + 5000
    node.ok("advance", "250")
    _, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (0, f"Successfully completed stop for VM {uuid}\n")
    vm = node.get(uuid)
    assert vm["state"] == "stopped"
    assert "transition_to" not in vm and "transition_expire" not in vm


@pytest.mark.parametrize(
    ("brand", "args", "deadline"),
    [
        pytest.param("kvm", ["-t", "20"], 20, id="kvm-t20"),
        pytest.param("bhyve", ["-t", "20"], 20, id="bhyve-t20"),
        pytest.param("joyent", [], 60, id="os-60s"),
        pytest.param("lx", [], 60, id="lx-60s"),
    ],
)
def test_ignored_shutdown_is_forced_at_the_deadline(
    node: Node, brand: str, args: list[str], deadline: float
) -> None:
    uuid = node.create(brand, "running")
    node.fault(uuid, guest_honors_shutdown=False)
    started = time.monotonic()
    r = node.vmadm("stop", uuid, *args)
    elapsed = time.monotonic() - started
    # a forced halt after the deadline still reports success
    assert (r.rc, r.last) == (0, f"Successfully completed stop for VM {uuid}")
    assert node.get(uuid)["state"] == "stopped"
    # the deadline is simulated time: it cannot have passed sooner than scaled
    assert elapsed >= deadline * node.scale


def test_honoured_shutdown_does_not_wait_for_the_deadline(node: Node) -> None:
    slow = node.at_scale(0.05)  # the 180 s deadline is 9 s away
    uuid = slow.create("bhyve", "running")
    r = slow.vmadm("stop", uuid)
    assert (r.rc, r.last) == (0, f"Successfully completed stop for VM {uuid}")
    # the guest halted by itself: the forced halt of this stop is still pending
    schedule = json.loads(slow.ok("dump"))["schedule"]
    assert [s["label"] for s in schedule if s["vm"] == uuid] == ["forced halt (vmadm)"]


def test_killing_a_bhyve_stop_cancels_its_forced_halt(node: Node) -> None:
    uuid = node.create("bhyve", "running")
    node.fault(uuid, guest_honors_shutdown=False)
    proc = node.popen("stop", uuid, "-t", "300")
    _until_autoboot_off(node, uuid)
    proc.kill()
    proc.communicate()
    node.ok("advance", "301")  # past the deadline: the step's owner is gone
    vm = node.get(uuid)
    assert (vm["state"], vm["autoboot"]) == ("running", False)
    assert f"stop {uuid} -t 300 -> killed" in node.ok("calls", uuid)
    assert json.loads(node.ok("dump"))["schedule"] == []


def test_killing_a_kvm_stop_does_not_cancel_vmadmd(node: Node) -> None:
    uuid = node.create("kvm", "running")
    node.fault(uuid, guest_honors_shutdown=False)
    proc = node.popen("stop", uuid, "-t", "300")
    node.wait_state(uuid, "stopping")
    proc.kill()
    proc.communicate()
    node.ok("advance", "301")  # vmadmd's timer forces the stop at transition_expire
    node.wait_state(uuid, "stopped")
    assert "transition_to" not in node.get(uuid)


def test_os_zone_forced_halt_is_owned_by_vmadm(node: Node) -> None:
    slow = node.at_scale(0.1)  # the 60 s deadline is 6 s away
    uuid = slow.create("joyent", "running")
    slow.fault(uuid, guest_honors_shutdown=False)
    proc = slow.popen("stop", uuid)
    _until_autoboot_off(slow, uuid)
    proc.kill()
    proc.communicate()
    slow.ok("advance", "61")
    assert slow.get(uuid)["state"] == "running"


def test_kvm_timeout_beyond_the_failsafe_fails_but_still_stops(node: Node) -> None:
    fast = node.at_scale(0.004)  # failsafe 300 s -> 1.2 s, -t 400 -> 1.6 s
    uuid = fast.create("kvm", "running")
    fast.fault(uuid, guest_honors_shutdown=False)
    r = fast.vmadm("stop", uuid, "-t", "1500")
    assert r.rc == 1
    assert r.last == (
        f'first of 1 error: vminfod watchForChanges "VM.js VM.stop ({uuid})" timeout exceeded'
    )
    assert fast.get(uuid)["state"] == "stopping"  # vmadmd's timer fires at 1500 s
    fast.ok("advance", "1500")
    fast.wait_state(uuid, "stopped")


def test_bhyve_timeout_beyond_the_failsafe_waits_for_its_own_halt(node: Node) -> None:
    fast = node.at_scale(0.004)
    uuid = fast.create("bhyve", "running")
    fast.fault(uuid, guest_honors_shutdown=False)
    r = fast.vmadm("stop", uuid, "-t", "400")
    assert r.rc == 1
    assert "VM.js VM.stop" in r.last
    # vasync.parallel: the error is reported after this process's own halt ran
    fast.ok("settle")
    assert fast.get(uuid)["zone_state"] in ("shutting_down", "down", "installed")


def test_stuck_zone_makes_stop_time_out(node: Node) -> None:
    fast = node.at_scale(0.004)
    uuid = fast.create("joyent", "running")
    fast.fault(uuid, stuck_state="down")
    r = fast.vmadm("stop", uuid)
    assert (r.rc, r.last) == (
        1,
        f'first of 1 error: vminfod watchForChanges "VM.js VM.stop ({uuid})" timeout exceeded',
    )
    vm = fast.get(uuid)
    assert (vm["state"], vm["zone_state"]) == ("down", "down")


def test_docker_stop_default_is_10s_with_sigkill(node: Node) -> None:
    uuid = node.create("lx", "running", docker="")
    node.fault(uuid, guest_honors_shutdown=False)
    started = time.monotonic()
    r = node.vmadm("stop", uuid)
    assert r.rc == 0
    assert time.monotonic() - started >= 10 * node.scale
    assert node.get(uuid)["exit_status"] == -9
    r = node.vmadm("stop", uuid, "-t", "3")  # docker accepts -t (already stopped: no-op)
    assert r.rc == 0
