"""`vmadm list` and `vmadm lookup`: table format, filters, sorting, fake fields, errors."""

from __future__ import annotations

import json

import pytest

from .conftest import Node

HEADER = "UUID                                  TYPE  RAM      STATE             ALIAS"


def _row(uuid: str, typ: str, ram: int, state: str, alias: str) -> str:
    return f"{uuid:<36}  {typ:<4}  {ram:<7}  {state:<16}  {alias}".rstrip()


def test_default_table(node: Node) -> None:
    kvm = node.create("kvm", "running", alias="web01", ram="2048")
    os_ = node.create("joyent", "stopped", alias="db01", ram="512")
    bh = node.create("bhyve", "stopped", alias="", ram="1024")
    lx = node.create("lx", "running", alias="lx01", ram="1024")
    r = node.vmadm("list")
    assert (r.rc, r.err) == (0, "")
    # default sort ram,uuid (numeric ram)
    mid = sorted([(bh, "BHYV", "stopped", "-"), (lx, "LX", "running", "lx01")])
    expected = [
        HEADER,
        _row(os_, "OS", 512, "stopped", "db01"),
        *(_row(u, t, 1024, s, a) for u, t, s, a in mid),
        _row(kvm, "KVM", 2048, "running", "web01"),
    ]
    assert r.out.splitlines() == expected


def test_parsable_keeps_colons_unescaped(node: Node) -> None:
    uuid = node.create("kvm", "running")
    assert node.vmadm("stop", uuid).rc == 0
    r = node.vmadm("list", "-p", "-H", "-o", "uuid,state,exit_timestamp")
    (line,) = r.out.splitlines()
    got_uuid, state, ts = line.split(":", 2)  # how Danube Cloud splits it
    assert (got_uuid, state) == (uuid, "stopped")
    assert ts == node.get(uuid)["exit_timestamp"]
    assert ts.count(":") == 2
    # a missing value is empty with -p, "-" without
    r = node.vmadm("list", "-p", "-o", "uuid,boot_timestamp")
    assert r.out == f"{uuid}:\n"
    r = node.vmadm("list", "-H", "-o", "uuid,boot_timestamp")
    assert r.out == f"{uuid}  -\n"


def test_falsy_values_print_as_dash(node: Node) -> None:
    uuid = node.create("kvm", "stopped")
    r = node.vmadm("list", "-H", "-o", "uuid,autoboot,firewall_enabled")
    # false is falsy in vmadm's check (`if (VM.flatten(m, field))`): "-", padded to 8
    assert r.out == f"{uuid}  {'-':<8}  -\n"
    r = node.vmadm("list", "-p", "-o", "autoboot,uuid")
    assert r.out == f":{uuid}\n"


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param(["brand=kvm"], {"k1", "k2"}, id="exact"),
        pytest.param(["state=running"], {"k1", "z1"}, id="state"),
        pytest.param(["alias=~^K"], {"k1", "k2"}, id="regex-case-insensitive"),
        pytest.param(["type=OS"], {"z1"}, id="fake-type"),
        pytest.param(["ram=512"], {"z1"}, id="fake-ram-of-os-vm"),
        pytest.param(["nics.*.nic_tag=admin", "brand=joyent"], {"z1"}, id="wildcard-and"),
        pytest.param(["tags.role=db"], {"k2"}, id="tags"),
        pytest.param(["alias=nomatch"], set(), id="none"),
    ],
)
def test_filters(node: Node, filters: list[str], expected: set[str]) -> None:
    names = {
        "k1": node.create("kvm", "running", alias="k1"),
        "k2": node.create("kvm", "stopped", alias="k2"),
        "z1": node.create("joyent", "running", alias="z1", ram="512"),
    }
    node.vmadm("update", names["k2"], stdin='{"set_tags": {"role": "db"}}')
    r = node.vmadm("list", "-H", "-o", "alias", *filters)
    assert r.rc == 0
    assert set(r.out.split()) == expected
    r = node.vmadm("lookup", *filters)
    assert set(r.out.split()) == {names[n] for n in expected}


def test_no_match_gives_header_only(node: Node) -> None:
    node.create("kvm", "running")
    r = node.vmadm("list", "uuid=00000000-0000-0000-0000-000000000000")
    assert (r.rc, r.out) == (0, HEADER + "\n")
    r = node.vmadm("list", "-p", "uuid=00000000-0000-0000-0000-000000000000")
    assert (r.rc, r.out) == (0, "")


def test_sort_descending_and_columns(node: Node) -> None:
    a = node.create("kvm", "running", alias="a", ram="1024")
    b = node.create("kvm", "running", alias="b", ram="4096")
    r = node.vmadm("list", "-H", "-s", "-ram", "-o", "alias,ram,zone_state,pid")
    lines = r.out.splitlines()
    assert [line.split()[0] for line in lines] == ["b", "a"]
    assert lines[0].startswith("b           4096     running     ")
    r = node.vmadm("list", "-p", "-s", "alias", "-o", "uuid,nics.0.mac")
    assert [x.split(":", 1)[0] for x in r.out.splitlines()] == [a, b]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["bogus=1"], 'Invalid filter key: "bogus"', id="filter"),
        pytest.param(["-o", "uuid,bogus"], "invalid order field: bogus", id="order-field"),
        pytest.param(["-s", "bogus"], "invalid sort field: bogus", id="sort-field"),
        pytest.param(["-s", "-bogus"], "invalid sort field: -bogus", id="sort-field-desc"),
        pytest.param(["-o", "nics.*.ip"], 'Invalid order key: "nics.*.ip"', id="order-key"),
        pytest.param(["-s", "disks.*.size"], 'Invalid sort key: "disks.*.size"', id="sort-key"),
    ],
)
def test_list_errors(node: Node, args: list[str], message: str) -> None:
    r = node.vmadm("list", *args)
    assert (r.rc, r.err, r.out) == (1, message + "\n", "")


def test_lookup_json_adds_fake_fields(node: Node) -> None:
    os_ = node.create("joyent-minimal", "running", ram="256")
    kvm = node.create("kvm", "running", ram="2048")
    r = node.vmadm("lookup", "-j")
    assert r.out.startswith("[\n  {\n")
    vms = {vm["uuid"]: vm for vm in json.loads(r.out)}
    assert (vms[os_]["type"], vms[os_]["ram"]) == ("OS", 256)
    assert (vms[kvm]["type"], vms[kvm]["ram"]) == ("KVM", 2048)
    assert "type" not in node.get(os_)


def test_lookup_json_fields_and_unique(node: Node) -> None:
    uuid = node.create("lx", "running", alias="only")
    node.create("lx", "stopped", alias="other")
    r = node.vmadm("lookup", "-j", "-o", "uuid,state,type", "alias=only")
    assert json.loads(r.out) == [{"uuid": uuid, "state": "running", "type": "LX"}]
    r = node.vmadm("lookup", "-j", "-o", "nosuchfield")
    assert json.loads(r.out) == []  # objects left without keys are dropped
    r = node.vmadm("lookup", "-1", "alias=only")
    assert (r.rc, r.out) == (0, uuid + "\n")
    r = node.vmadm("lookup", "-j", "alias=none")
    assert (r.rc, r.out) == (0, "[]\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["-o", "uuid"], "Cannot specify -o without -j", id="o-without-j"),
        pytest.param(["-1"], "Requested unique lookup but found 2 results.", id="unique"),
        pytest.param(["-1", "alias=x"], "Requested unique lookup but found 0 results.", id="0"),
        pytest.param(["bogus=1"], 'Invalid lookup key: "bogus"', id="key"),
    ],
)
def test_lookup_errors(node: Node, args: list[str], message: str) -> None:
    node.create("kvm", "running")
    node.create("kvm", "running")
    r = node.vmadm("lookup", *args)
    assert (r.rc, r.err, r.out) == (1, message + "\n", "")
