"""Classification of every message vmadm prints (docs/driver.md, vmadm facts; pure)."""

from __future__ import annotations

import json

import pytest

from vmd.model import OutcomeKind
from vmd.node_agent.driver import classify

U = "54f1cc77-68f1-42ab-acac-5c4f64f5d6e0"
H = "web01.example.com"
S, N, F, X = OutcomeKind.SUCCESS, OutcomeKind.NOOP, OutcomeKind.NOT_FOUND, OutcomeKind.FAILURE

USAGE = (
    "Usage: /usr/sbin/vmadm <command> [options]\n\n"
    "create [-f <filename>]\nstart <uuid> [option=value ...]\n"
)

CASES = [
    # start
    pytest.param(0, f"Successfully started VM {U}", S, id="start-ok"),
    pytest.param(0, f"Unable to start VM {U}: VM {U} is already 'running'", N,
                 id="start-already-running"),
    pytest.param(1, f'Unable to start VM {U}: Cannot start vm from state "failed", must be '
                 '"stopped".', X, id="start-wrong-state"),
    pytest.param(1, f"Unable to start VM {U}: bad statusCode: 404", F, id="start-unknown"),
    pytest.param(1, f"Unable to start VM {U}: first of 1 error: zoneadm: zone '{U}': boot "
                 "failed", X, id="start-zoneadm-failure"),
    pytest.param(1, f'Unable to start VM {U}: first of 1 error: vminfod watchForChanges '
                 f'"VM.js startZone ({U})" timeout exceeded', X, id="start-watch-timeout"),
    pytest.param(1, f"Unable to start VM {U}: Cannot find disk: /iso/x.iso", X,
                 id="start-missing-iso"),
    pytest.param(1, f'Unable to start VM {U}: "sata" is not a valid disk model for kvm brand. '
                 "Valid are: virtio,scsi,ide", X, id="start-bad-model"),
    pytest.param(2, "You can only specify 'order' once when starting a VM\n" + USAGE, X,
                 id="start-usage-order-twice"),
    pytest.param(2, "Parameter to cdrom must be: path,model\n" + USAGE, X,
                 id="start-usage-cdrom"),
    pytest.param(2, "Invalid argument to start: once\n" + USAGE, X, id="start-usage-once"),
    pytest.param(2, "Invalid or missing UUID for boot\n" + USAGE, X, id="usage-bad-uuid"),
    # stop
    pytest.param(0, f"Successfully completed stop for VM {U}", S, id="stop-ok"),
    pytest.param(0, f"VM {U} is already not 'running' (currently: stopped)", N,
                 id="stop-already-stopped"),
    pytest.param(0, f"VM {U} is already not 'running' (currently: stopping)", N,
                 id="stop-already-stopping"),
    pytest.param(1, f"first of 1 error: VM {U} is already not 'running' (currently: stopped)",
                 N, id="stop-force-already-stopped"),
    pytest.param(1, "first of 1 error: Timeout option is only supported for bhyve, KVM and "
                 "docker containers.", X, id="stop-t-on-zone"),
    pytest.param(1, f"VM {U} not found", F, id="stop-unknown"),
    pytest.param(1, "bad statusCode: 404", F, id="stop-force-unknown"),
    pytest.param(1, 'first of 1 error: Unable to post "stop" to vmadmd: connect ECONNREFUSED '
                 "127.0.0.1:8080", X, id="stop-vmadmd-down"),
    pytest.param(1, f'first of 1 error: vminfod watchForChanges "VM.js VM.stop ({U})" '
                 "timeout exceeded", X, id="stop-watch-timeout"),
    # reboot
    pytest.param(0, f"Successfully completed reboot for VM {U}", S, id="reboot-ok"),
    pytest.param(1, 'Cannot reboot vm from state "stopped", must be "running"', X,
                 id="reboot-stopped"),
    pytest.param(1, 'Cannot reset vm from state "stopped", must be "running".', X,
                 id="reboot-force-stopped"),
    pytest.param(1, "timed out waiting for zone to reboot", X, id="reboot-timeout"),
    pytest.param(1, "Cannot reboot vm: missing nic tags: admin", X, id="reboot-nic-tags"),
    # get, update
    pytest.param(1, f"zoneadm: {U}: No such zone configured", F, id="get-unknown"),
    pytest.param(0, f"Successfully updated VM {U}", S, id="update-ok"),
    pytest.param(1, "Invalid value(s) for: ram", X, id="update-bad-value"),
    pytest.param(2, "Will not update from stdin when stdin is a tty.", X, id="update-tty"),
    # every command
    pytest.param(2, "FATAL: cannot run because: you are not root.", X, id="fatal-not-root"),
    pytest.param(2, 'Invalid command: "events".\n' + USAGE, X, id="invalid-command"),
    pytest.param(0, "", X, id="exit0-no-message"),
    pytest.param(0, "something unexpected", X, id="exit0-other-text"),
    pytest.param(137, "", X, id="killed"),
]


@pytest.mark.parametrize(("rc", "stderr", "kind"), CASES)
def test_classification(rc: int, stderr: str, kind: OutcomeKind) -> None:
    outcome = classify.classify(rc, stderr, uuid=U, hostname=H)
    assert outcome.kind is kind
    assert outcome.returncode == rc
    assert U not in outcome.message
    assert "\n" not in outcome.message
    assert outcome.message  # never empty


@pytest.mark.parametrize(("rc", "stderr", "kind"), CASES)
def test_classification_after_bunyan_debug_lines(rc: int, stderr: str, kind: OutcomeKind) -> None:
    noise = "".join(
        json.dumps({"name": "vmadm", "level": 20, "msg": f"step {i} for {U}", "v": 0}) + "\n"
        for i in range(3)
    )
    assert classify.classify(rc, noise + stderr).kind is kind


def test_message_replaces_every_uuid_with_hostname() -> None:
    outcome = classify.classify(0, f"Unable to start VM {U}: VM {U} is already 'running'",
                                uuid=U, hostname=H)
    assert outcome.message == f"Unable to start VM {H}: VM {H} is already 'running'"


def test_success_message_is_vm_status_wording() -> None:
    outcome = classify.classify(0, f"Successfully started VM {U}\n", uuid=U, hostname=H)
    assert (outcome.kind, outcome.returncode, outcome.message) == (
        S, 0, f"Successfully started VM {H}")


def test_usage_error_reports_the_error_not_the_usage_text() -> None:
    assert classify.message_line("Invalid argument to start: once\n" + USAGE) == (
        "Invalid argument to start: once")


def test_timeout_is_a_failure_with_rc_124() -> None:
    outcome = classify.timed_out(f"vmadm stop {U}", 30, "")
    assert (outcome.kind, outcome.returncode) == (X, 124)
    assert "did not finish within 30 s and was killed" in outcome.message
