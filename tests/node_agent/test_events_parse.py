"""Parsing of `vmadm events -j` lines and the power-relevant diff of snapshots (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from vmd.node_agent.driver.events import BadEvent, diff, parse_date, parse_event, snapshot

A = "11111111-1111-4111-8111-111111111111"
B = "22222222-2222-4222-8222-222222222222"
C = "33333333-3333-4333-8333-333333333333"
DATE = "2026-03-01T12:34:56.789Z"
WHEN = datetime(2026, 3, 1, 12, 34, 56, 789000, tzinfo=UTC).timestamp()


def vm(uuid: str, state: str, **extra: object) -> dict[str, object]:
    return {"uuid": uuid, "zonename": uuid, "state": state, "brand": "kvm", "pid": 4, **extra}


def line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def test_date_is_posix_seconds() -> None:
    assert parse_date(DATE) == pytest.approx(WHEN)


def test_ready_keyed_by_zonename_keeps_listing_fields_only() -> None:
    event = parse_event(line({"type": "ready", "date": DATE, "uuid": C,
                              "vms": {A: vm(A, "running"), "global": {"zonename": "global"}}}))
    assert event is not None and event.type == "ready" and event.date == pytest.approx(WHEN)
    assert event.vms == {A: {"uuid": A, "state": "running", "brand": "kvm"}}


def test_modify_create_delete() -> None:
    changes = [{"path": ["state"], "action": "changed", "oldValue": "running",
                "newValue": "stopped"}]
    modify = parse_event(line({"type": "modify", "date": DATE, "zonename": A, "uuid": A,
                               "vm": vm(A, "stopped"), "changes": changes}))
    assert modify is not None and modify.uuid == A and modify.vm is not None
    assert modify.vm["state"] == "stopped" and "pid" not in modify.vm
    create = parse_event(line({"type": "create", "date": DATE, "zonename": B, "uuid": B,
                               "vm": vm(B, "stopped")}))
    assert create is not None and create.type == "create" and create.uuid == B
    delete = parse_event(line({"type": "delete", "date": DATE, "zonename": B, "uuid": B}))
    assert delete is not None and delete.type == "delete" and delete.vm is None


def test_unknown_type_is_skipped() -> None:
    assert parse_event(line({"type": "heartbeat", "date": DATE})) is None


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"not json\n", id="not-json"),
        pytest.param(b"[1]\n", id="not-object"),
        pytest.param(line({"date": DATE}), id="no-type"),
        pytest.param(line({"type": "modify", "date": 5}), id="date-not-string"),
        pytest.param(line({"type": "modify", "date": "yesterday"}), id="bad-date"),
        pytest.param(line({"type": "modify", "date": "2026-03-01T12:00:00"}), id="naive-date"),
        pytest.param(line({"type": "ready", "date": DATE}), id="ready-without-vms"),
        pytest.param(line({"type": "modify", "date": DATE, "uuid": A}), id="modify-without-vm"),
    ],
)
def test_malformed_lines(raw: bytes) -> None:
    with pytest.raises(BadEvent):
        parse_event(raw)


def test_snapshot_from_lookup_list() -> None:
    assert set(snapshot([vm(A, "running"), vm(B, "stopped"), {"uuid": "x"}])) == {A, B}


def test_diff_reports_only_power_relevant_changes() -> None:
    known = {A: {"uuid": A, "state": "running"}, B: {"uuid": B, "state": "stopped"},
             C: {"uuid": C, "state": "running", "alias": "x"}}
    new = {A: {"uuid": A, "state": "stopped"},               # state changed
           C: {"uuid": C, "state": "running", "alias": "y"},  # alias only: not reported
           "44444444-4444-4444-8444-444444444444": {"state": "running"}}  # appeared
    # B vanished
    assert diff(known, new) == [
        (A, {"uuid": A, "state": "stopped"}),
        (B, None),
        ("44444444-4444-4444-8444-444444444444", {"state": "running"}),
    ]
    assert diff(new, new) == []
