"""`vmadm update`: key=value and JSON on stdin, typed checks, silent drops, the tty refusal."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from .conftest import MISSING, VMADM, Node


def test_key_value_update_is_one_modify_event(node: Node) -> None:
    uuid = node.create("kvm", "running", alias="old")
    before = len(node.journal())
    r = node.vmadm("update", uuid, "alias=new", "ram=2048", "autoboot=false", "nonsense=1")
    assert (r.rc, r.err, r.out) == (0, f"Successfully updated VM {uuid}\n", "")
    vm = node.get(uuid)
    assert (vm["alias"], vm["ram"], vm["autoboot"]) == ("new", 2048, False)
    assert "nonsense" not in vm  # unknown properties are dropped silently
    events = node.journal()[before:]
    assert len(events) == 1
    assert {c["prettyPath"] for c in events[0]["changes"]} == {"alias", "ram", "autoboot"}


def test_json_on_stdin(node: Node) -> None:
    uuid = node.create("bhyve", "stopped")
    payload = {
        "bhyve_extra_opts": "-s 3:0,ahci-cd,/iso/x.iso",
        "set_internal_metadata": {"ostype": "windows"},
        "set_tags": {"a": "1", "b": "2"},
        "update_disks": [{"path": node.get(uuid)["disks"][0]["path"], "size": 20480}],
    }
    assert node.vmadm("update", uuid, stdin=json.dumps(payload)).rc == 0
    vm = node.get(uuid)
    assert vm["bhyve_extra_opts"] == "-s 3:0,ahci-cd,/iso/x.iso"
    assert vm["internal_metadata"] == {"ostype": "windows"}
    assert vm["disks"][0]["size"] == 20480
    events = node.journal()
    disk_change = [c for c in events[-1]["changes"] if c["prettyPath"] == "disks.*.size"]
    assert disk_change[0]["ident"] == vm["disks"][0]["path"]
    assert disk_change[0]["path"] == ["disks", None, "size"]
    # JSON null removes; remove_tags drops keys
    payload2 = {"bhyve_extra_opts": None, "remove_tags": ["a"]}
    assert node.vmadm("update", uuid, stdin=json.dumps(payload2)).rc == 0
    vm = node.get(uuid)
    assert "bhyve_extra_opts" not in vm
    assert vm["tags"] == {"b": "2"}


def test_update_from_file(node: Node, tmp_path: os.PathLike[str]) -> None:
    uuid = node.create("kvm", "stopped")
    path = os.path.join(tmp_path, "payload.json")
    with open(path, "w") as f:
        json.dump({"alias": "from-file"}, f)
    assert node.vmadm("update", uuid, "-f", path).rc == 0
    assert node.get(uuid)["alias"] == "from-file"
    r = node.vmadm("update", uuid, "-f", path + ".missing")
    assert (r.rc, r.last) == (1, f"File: {path}.missing does not exist.")


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        pytest.param(["ram=lots"], "", "Invalid value(s) for: ram", id="int"),
        pytest.param(["autoboot=yes"], "", "Invalid value(s) for: autoboot", id="bool"),
        pytest.param(["ram=null"], "", "Invalid value(s) for: ram", id="null-string"),
        pytest.param(
            [], '{"vcpus": "two", "alias": 5}', "Invalid value(s) for: vcpus,alias", id="json-types"
        ),
        pytest.param([], '{"set_tags": [1]}', "Invalid value(s) for: set_tags", id="special"),
        pytest.param([], "{not json", None, id="bad-json"),
        pytest.param([], "[1, 2]", "Invalid JSON payload: not an object", id="not-object"),
    ],
)
def test_invalid_values(node: Node, args: list[str], stdin: str, message: str | None) -> None:
    uuid = node.create("kvm", "running", alias="keep")
    before = len(node.journal())
    r = node.vmadm("update", uuid, *args, stdin=stdin)
    assert r.rc == 1
    if message is None:
        assert r.last.startswith("Invalid JSON payload: ")
    else:
        assert r.last == message
    assert node.get(uuid)["alias"] == "keep"
    assert len(node.journal()) == before


def test_unknown_vm(node: Node) -> None:
    r = node.vmadm("update", MISSING, "alias=x")
    assert (r.rc, r.err) == (1, f"VM {MISSING} not found\n")


def test_refuses_a_tty_stdin(node: Node) -> None:
    uuid = node.create("kvm", "running")
    leader, follower = os.openpty()
    try:
        done = subprocess.run(
            [VMADM, "update", uuid],
            stdin=follower,
            capture_output=True,
            text=True,
            env=node.env,
            timeout=30,
            check=False,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == "Will not update from stdin when stdin is a tty."
    assert done.stderr.splitlines()[1].startswith("Usage:")
