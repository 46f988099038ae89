"""vmadm's command-line grammar: usage errors, the UUID check, start options, environment."""

from __future__ import annotations

import os
import subprocess

import pytest

from .conftest import MISSING, VMADM, Node

USAGE_HEAD = "Usage: /usr/vm/sbin/vmadm <command> [options]"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["frobnicate"], 'Invalid command: "frobnicate".', id="unknown-command"),
        pytest.param(["start"], "Invalid or missing UUID for start", id="start-no-uuid"),
        pytest.param(["boot", "xyz"], "Invalid or missing UUID for boot", id="boot-alias"),
        pytest.param(["stop", "not-a-uuid"], "Invalid or missing UUID for stop", id="stop"),
        pytest.param(["halt", "x"], "Invalid or missing UUID for stop", id="halt-is-stop"),
        pytest.param(["reboot", "-F"], "Invalid or missing UUID for reboot", id="reboot"),
        pytest.param(["get"], "Invalid or missing UUID for get", id="get"),
        pytest.param(["json", "1234"], "Invalid or missing UUID for json", id="json-alias"),
        pytest.param(["update", "x=y"], "Invalid or missing UUID for update", id="update"),
        pytest.param(
            ["start", MISSING, "order=c", "order=d"],
            "You can only specify 'order' once when starting a VM",
            id="order-twice",
        ),
        pytest.param(
            ["start", MISSING, "cdrom=/iso/x.iso"],
            "Parameter to cdrom must be: path,model",
            id="cdrom-no-model",
        ),
        pytest.param(
            ["start", MISSING, "disk=,ide"], "Parameter to disk must be: path,model", id="disk"
        ),
        pytest.param(
            ["start", MISSING, "order=c", "once=d"],
            "Invalid argument to start: once",
            id="separate-once",
        ),
        pytest.param(["start", MISSING, "once"], "Invalid argument to start: once", id="bare"),
    ],
)
def test_usage_errors_exit_2_with_message_then_usage(
    node: Node, args: list[str], message: str
) -> None:
    r = node.vmadm(*args)
    assert r.rc == 2
    assert r.out == ""
    lines = r.err.splitlines()
    assert lines[0] == message
    assert lines[1] == USAGE_HEAD
    assert "start <uuid> [option=value ...]" in r.err


def test_no_command_prints_usage_exit_2(node: Node) -> None:
    r = node.vmadm()
    assert r.rc == 2
    assert r.err.splitlines()[0] == USAGE_HEAD


@pytest.mark.parametrize("flag", ["help", "-h", "-?"])
def test_help_goes_to_stdout_exit_0(node: Node, flag: str) -> None:
    r = node.vmadm(flag)
    assert r.rc == 0
    assert r.out.splitlines()[0] == USAGE_HEAD
    assert r.err == ""


def test_unsimulated_command_is_an_error(node: Node) -> None:
    r = node.vmadm("info", MISSING)
    assert r.rc == 1
    assert "not simulated" in r.last


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VMADM, "list"], capture_output=True, text=True, env=env, timeout=30, check=False
    )


def test_refuses_to_run_without_root() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMADM_SIM")}
    done = _run(env)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert "VMADM_SIM_ROOT" in done.stderr


def test_refuses_a_root_that_does_not_exist(node: Node) -> None:
    done = _run({**node.env, "VMADM_SIM_ROOT": str(node.root / "absent")})
    assert done.returncode == 2
    assert "is not a directory" in done.stderr
    assert not (node.root / "absent").exists()


@pytest.mark.parametrize("scale", ["fast", "-1", "nan", "inf"])
def test_refuses_a_bad_timescale(node: Node, scale: str) -> None:
    done = _run({**node.env, "VMADM_SIM_TIMESCALE": scale})
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "VMADM_SIM_TIMESCALE" in done.stderr


def test_fatal_privilege_emulation(node: Node) -> None:
    r = node.vmadm("list", VMADM_SIM_FATAL="you are not root.")
    assert (r.rc, r.err) == (2, "FATAL: cannot run because: you are not root.\n")


def test_debug_level_adds_bunyan_lines_before_the_message(node: Node) -> None:
    uuid = node.create("joyent", "stopped")
    r = node.vmadm("start", uuid, VMADM_DEBUG_LEVEL="debug")
    assert r.rc == 0
    lines = r.err.strip().splitlines()
    assert len(lines) > 1
    assert all(line.startswith('{"name":"vmadm"') for line in lines[:-1])
    assert lines[-1] == f"Successfully started VM {uuid}"


def test_options_anywhere_and_in_clusters(node: Node) -> None:
    uuid = node.create("kvm", "running")
    r = node.vmadm("stop", "-t", "5", uuid)
    assert (r.rc, r.last) == (0, f"Successfully completed stop for VM {uuid}")
    r = node.vmadm("stop", "-vF", uuid)  # -v and -F in one cluster; the VM is stopped
    assert r.rc == 1
    assert r.last.startswith("first of 1 error: VM")
