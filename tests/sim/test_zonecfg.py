"""`vmd-zonecfg`: the zone's fs resources (the ISO mount of a start from an ISO)."""

from __future__ import annotations

import json

import pytest

from .conftest import Node

MOUNT = "add fs; set dir=/iso; set special=/opt/iso; set type=lofs; add options [ro,nodevices]; end"
INFO = "fs:\n\tdir: /iso\n\tspecial: /opt/iso\n\traw not specified\n\ttype: lofs\n" \
       "\toptions: [ro,nodevices]\n"


def test_add_and_info_fs(node: Node) -> None:
    uuid = node.create("kvm", "stopped")
    empty = node.zonecfg("-z", uuid, "info", "fs")
    assert (empty.rc, empty.out, empty.err) == (0, "", "")
    stream = node.events("-jr")
    assert stream.next_json()["type"] == "ready"
    added = node.zonecfg("-z", uuid, MOUNT)
    assert (added.rc, added.out, added.err) == (0, "", "")
    event = stream.next_json()
    assert (event["type"], event["uuid"]) == ("modify", uuid)
    assert [c["path"][0] for c in event["changes"]] == ["filesystems"]
    assert node.zonecfg("-z", uuid, "info fs").out == INFO
    assert node.zonecfg("-z", uuid, "info", "fs", "dir=/iso").out == INFO
    assert node.zonecfg("-z", uuid, "info", "fs", "dir=/other").out == ""
    assert node.get(uuid)["filesystems"] == [
        {"target": "/iso", "source": "/opt/iso", "type": "lofs", "options": ["ro", "nodevices"]}]


@pytest.mark.parametrize(
    ("script", "message"),
    [
        pytest.param("add fs; set dir=/iso; set type=lofs; end", "special not specified",
                     id="no-special"),
        pytest.param("add fs; set dir=iso; set special=/x; set type=lofs; end",
                     "invalid dir: iso (an absolute path)", id="relative-dir"),
        pytest.param("add fs; set dir=/iso", "fs resource incomplete (no end)", id="no-end"),
        pytest.param("add fs; set color=red; end", "fs: cannot set 'color=red'", id="bad-prop"),
    ],
)
def test_bad_scripts_commit_nothing(node: Node, script: str, message: str) -> None:
    uuid = node.create("kvm", "stopped")
    r = node.zonecfg("-z", uuid, f"add fs; set dir=/a; set special=/a; set type=lofs; end; "
                                 f"{script}")
    assert (r.rc, r.last) == (1, f"{uuid}: {message}")
    assert "filesystems" not in node.get(uuid)


def test_a_second_mount_at_the_same_dir_is_refused(node: Node) -> None:
    uuid = node.create("kvm", "stopped")
    assert node.zonecfg("-z", uuid, MOUNT).rc == 0
    r = node.zonecfg("-z", uuid, MOUNT)
    assert (r.rc, r.last) == (1, f"{uuid}: Could not add fs: an fs resource with dir /iso exists")
    assert len(node.get(uuid)["filesystems"]) == 1


def test_usage_and_unknown_zones(node: Node) -> None:
    r = node.zonecfg()
    assert r.rc == 2 and r.last.startswith("usage:")
    missing = "0e3e0e3e-0000-4000-8000-000000000000"
    r = node.zonecfg("-z", missing, "info", "fs")
    assert (r.rc, r.last) == (1, f"{missing}: No such zone configured")
    r = node.zonecfg("-z", "../../etc", "info", "fs")
    assert (r.rc, r.last) == (1, "../../etc: No such zone configured")
    uuid = node.create("kvm", "stopped")
    r = node.zonecfg("-z", uuid, "delete", "-F")
    assert (r.rc, r.last) == (1, 'vmd-zonecfg: "delete -F" is not simulated')


def test_calls_are_logged_with_req_id_and_faults_apply(node: Node) -> None:
    uuid = node.create("kvm", "stopped")
    node.ok("fault", uuid, "fail_next=" + json.dumps([
        {"cmd": "*", "stderr": "any vmadm call", "exit": 1},
        {"cmd": "zonecfg", "stderr": "zonecfg: permission denied", "exit": 1}]))
    r = node.zonecfg("-z", uuid, MOUNT, REQ_ID="0-a2327793-2600-423d-9f07")
    assert (r.rc, r.last) == (1, "zonecfg: permission denied")
    assert node.zonecfg("-z", uuid, "info", "fs").out == ""  # the fault was used up
    assert node.vmadm("get", uuid, REQ_ID="vmd-sync-1").last == "any vmadm call"
    assert node.ok("calls", "--req-id", uuid).splitlines() == [
        f"REQ_ID=0-a2327793-2600-423d-9f07 zonecfg -z {uuid} {MOUNT} -> exit 1",
        f"zonecfg -z {uuid} info fs -> exit 0",
        f"REQ_ID=vmd-sync-1 get {uuid} -> exit 1",
    ]
    assert node.ok("calls", uuid).splitlines()[0] == f"zonecfg -z {uuid} {MOUNT} -> exit 1"


def test_the_zonepath_is_the_zone_directory_on_this_host(node: Node) -> None:
    uuid = node.create("kvm", "stopped")
    zone = node.root / "zones" / uuid
    assert node.get(uuid)["zonepath"] == str(zone)
    assert (zone / "root").is_dir()
    node.ok("destroy", uuid)
    assert not zone.exists()
