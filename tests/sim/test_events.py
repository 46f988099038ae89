"""`vmadm events`: the stream across processes, its formats, filters and failure modes."""

from __future__ import annotations

import re
import subprocess

import pytest

from .conftest import MISSING, VMADM, Node

ISO_MS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def _changes(ev: dict[str, object]) -> dict[str, dict[str, object]]:
    return {c["prettyPath"]: c for c in ev["changes"]}  # type: ignore[attr-defined]


def test_ready_create_modify_delete_across_processes(node: Node) -> None:
    first = node.create("kvm", "running", alias="first")
    stream = node.events("-jr")
    ready = stream.next_json()
    assert ready["type"] == "ready"
    assert re.fullmatch(ISO_MS, ready["date"])
    assert ready["uuid"] != first  # a listener id, not a VM
    assert list(ready["vms"]) == [first]  # keyed by zonename
    assert ready["vms"][first]["state"] == "running"

    uuid = node.create("bhyve", "running", alias="second")
    ev = stream.next_json()
    assert (ev["type"], ev["uuid"], ev["zonename"]) == ("create", uuid, uuid)
    assert ev["vm"]["alias"] == "second"
    assert "seq" not in ev

    node.ok("crash", uuid)
    ev = stream.next_json()
    assert ev["type"] == "modify"
    c = _changes(ev)["zone_state"]
    assert c == {
        "prettyPath": "zone_state",
        "path": ["zone_state"],
        "action": "changed",
        "oldValue": "running",
        "newValue": "shutting_down",
    }
    assert _changes(ev)["pid"]["action"] == "removed"
    last = stream.until(lambda e: e["vm"]["zone_state"] == "installed")
    assert last["vm"]["state"] == "stopped"
    assert last["vm"]["exit_status"] != 0
    assert last["vm"]["autoboot"] is True  # a crash leaves autoboot alone
    assert _changes(last)["exit_status"]["action"] == "added"

    node.ok("destroy", uuid)
    ev = stream.next_json()
    assert ev == {"type": "delete", "date": ev["date"], "zonename": uuid, "uuid": uuid}
    assert stream.stop() == ""  # never a word on stderr


def test_changes_made_by_vmadm_in_another_process_are_streamed(node: Node) -> None:
    uuid = node.create("kvm", "running")
    stream = node.events("-j")  # without -r: no ready line
    node.attach(stream)
    assert node.vmadm("stop", uuid).rc == 0
    ev = stream.until(lambda e: e["uuid"] == uuid)  # (late marker events are skipped)
    assert ev["type"] == "modify"
    assert _changes(ev)["autoboot"]["newValue"] is False
    ev = stream.next_json()
    c = _changes(ev)
    assert (c["state"]["oldValue"], c["state"]["newValue"]) == ("running", "stopping")
    assert c["transition_to"] == {
        "prettyPath": "transition_to",
        "path": ["transition_to"],
        "action": "added",
        "newValue": "stopped",
    }
    stream.until(lambda e: e["vm"]["state"] == "stopped")
    assert "last_modified" not in {p for e in [ev] for p in _changes(e)}


def test_uuid_filter(node: Node) -> None:
    a = node.create("joyent", "running")
    b = node.create("joyent", "running")
    stream = node.events("-jr", b)
    assert list(stream.next_json()["vms"]) == [b]
    node.ok("crash", a)
    node.ok("crash", b)
    assert stream.next_json()["uuid"] == b


def test_unknown_uuid(node: Node) -> None:
    r = node.vmadm("events", "-j", MISSING)
    assert (r.rc, r.err, r.out) == (1, f"VM {MISSING} not found\n", "")


def test_default_text_format(node: Node) -> None:
    uuid = node.create("kvm", "running", alias="a-very-long-alias-that-goes-on-and-on")
    stream = node.events("-r")
    assert re.fullmatch(r"\[\d\d:\d\d:\d\d\.\d{3}Z\] ready", stream.next_line())
    node.ok("crash", uuid)
    lines = [stream.next_line() for _ in range(5)]  # state, zone_state, pid, zoneid, boot_ts
    base = rf"\[\d\d:\d\d:\d\d\.\d{{3}}Z\] {uuid[:8]} a-very-long-alias-that-goes\.\.\. modify"
    assert re.fullmatch(base + r': state changed :: "running" -> "shutting_down"', lines[0])
    assert re.fullmatch(base + r': zone_state changed :: "running" -> "shutting_down"', lines[1])
    assert re.fullmatch(base + r": pid removed :: \d+ -> undefined", lines[2])


def test_full_text_format(node: Node) -> None:
    stream = node.events("-f", "-r")
    line = stream.next_line()
    assert re.fullmatch(rf"\[{ISO_MS}\] ready \(uuid [0-9a-f-]{{36}}\)", line)
    uuid = node.create("lx", "stopped", alias="web01")
    assert re.fullmatch(rf"\[{ISO_MS}\] {uuid} web01 create", stream.next_line())


def test_epipe_exits_0_quietly(node: Node) -> None:
    node.create("kvm", "running")
    proc = subprocess.Popen(
        [VMADM, "events", "-rj"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=node.env
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b'{"type":"ready"')
    proc.stdout.close()  # the reader goes away
    uuid = node.create("kvm", "running")  # the next event hits the closed pipe
    node.ok("crash", uuid)
    assert proc.wait(timeout=20) == 0
    assert proc.stderr.read() == b""
    proc.stderr.close()


def test_events_kill_makes_streams_die(node: Node) -> None:
    stream = node.events("-jr")
    stream.next_json()
    node.ok("events-kill")
    rc, err = stream.wait()
    assert rc == 134
    assert len(err.strip().splitlines()) == 1
    # a restarted stream works again, from a fresh ready line
    again = node.events("-jr")
    assert again.next_json()["type"] == "ready"


def test_events_die_after_n_events(node: Node) -> None:
    node.fault("global", events_die_after=2)
    stream = node.events("-jr")
    stream.next_json()
    node.create("kvm", "stopped")
    node.create("kvm", "stopped")
    assert stream.next_json()["type"] == "create"
    assert stream.next_json()["type"] == "create"
    rc, err = stream.wait()
    assert rc == 134
    assert "vminfod" in err


@pytest.mark.parametrize("brand", ["kvm", "joyent"])
def test_scheduled_steps_happen_with_only_a_stream_watching(node: Node, brand: str) -> None:
    uuid = node.create(brand, "stopped")
    node.fault(uuid, boot_seconds=50)
    stream = node.events("-jr", uuid)
    stream.next_json()  # ready: the stream is attached
    # a start that is killed right after its plan is committed: the zone still boots,
    # because the stream's poll loop settles the world
    proc = node.popen("start", uuid)
    stream.until(lambda e: e["vm"]["zone_state"] == "ready")
    proc.kill()
    proc.communicate()
    ev = stream.until(lambda e: e["vm"]["zone_state"] == "running")
    assert ev["vm"]["state"] == "running"
