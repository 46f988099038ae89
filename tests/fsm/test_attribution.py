"""Who caused a change: the in-flight task's observed target is the task's change, with the
requester as `principal` (protocol.md §9); crashes and syncs name no one. And the power
history request's checks (vmd.fsm.history)."""

from __future__ import annotations

from typing import Any

import pytest

from vmd.fsm import Kind, Route, full_sync, route
from vmd.fsm.history import AT_LEAST_1, AT_MOST, HistoryQuery, entry_of, parse_history
from vmd.model import NodeName, Observation, OutcomeKind, VmStatus, VmUuid

from .helpers import (
    ADMIN,
    ALICE,
    BOB,
    HOST,
    NOW,
    UUID,
    done,
    make_vm,
    make_world,
    obs,
    put,
    req,
    task_of,
    world_in,
)

S = VmStatus


def _changes(d: Any) -> list[tuple[str, str, str, str | None, str | None]]:
    return [(c.previous.value, c.status.value, c.cause.value, c.task_id, c.principal)
            for c in d.changes]


@pytest.mark.parametrize(
    ("start", "action", "reported", "end"),
    [
        pytest.param(S.STOPPED, "start", ["running"], S.RUNNING, id="start"),
        pytest.param(S.RUNNING, "stop", ["stopped"], S.STOPPED, id="stop"),
        pytest.param(S.RUNNING, "reboot", ["running"], S.RUNNING, id="reboot"),
        pytest.param(S.RUNNING, "reboot", ["stopped", "running"], S.RUNNING,
                     id="reboot-halt-and-boot"),
    ],
)
def test_observed_path_of_the_task_is_the_task(start: VmStatus, action: str,
                                               reported: list[str], end: VmStatus) -> None:
    vm = make_vm(start, status_change=NOW - 100)
    world = make_world(vm)
    first = put(world, ALICE, action)
    task = task_of(world, first)
    assert task.principal == "alice"
    assert _changes(first)[0][2:] == ("task", task.task_id, "alice")
    seen = []
    for i, state in enumerate(reported):
        seen += _changes(obs(world, state, NOW + 1 + i))
    assert vm.status is end
    assert all(c[2:] == ("task", task.task_id, "alice") for c in seen), seen
    result = done(world, task.task_id, now=NOW + 5)
    assert result.changes == () and result.resync == ()  # no second change


def test_crash_and_out_of_band_changes_name_no_one() -> None:
    world, _vm, task = world_in("starting")
    assert task is not None
    d = obs(world, "stopped", NOW + 1)  # not the start's path: the node's own doing
    assert _changes(d) == [("starting", "stopped", "node", None, None)]
    d = obs(world, "running", NOW + 2)  # the slot is still the start's, but from stopped
    assert _changes(d) == [("stopped", "running", "node", None, None)]
    world, _vm, _ = world_in("running")
    assert _changes(obs(world, "stopped", NOW + 1)) == [
        ("running", "stopped", "node", None, None)]


def test_results_reverts_and_admin_changes_carry_the_principal() -> None:
    world, _vm, task = world_in("starting")
    assert task is not None
    d = done(world, task.task_id)
    assert _changes(d) == [("starting", "running", "task", task.task_id, "admin")]
    world, _vm, _ = world_in("running")
    task = task_of(world, put(world, ALICE, "stop"))
    d = done(world, task.task_id, OutcomeKind.FAILURE, 1, "boom")
    assert _changes(d) == [("stopping", "running", "task", task.task_id, "alice")]
    world, _vm, _ = world_in("stopped")
    d = put(world, ADMIN, "stop", {"freeze": True})
    assert _changes(d) == [("stopped", "frozen", "admin", None, "admin")]
    world, _vm, _ = world_in("running")
    forced = task_of(world, req(world, ADMIN, "PUT", f"/vm/{HOST}/status/current",
                                {"force": True}))
    d = done(world, forced.task_id, state="stopped")
    assert _changes(d) == [("running", "stopped", "admin", forced.task_id, "admin")]


def test_a_sync_reaching_the_target_is_the_task_too() -> None:
    world, _vm, task = world_in("starting")
    assert task is not None
    (d,) = full_sync(world, NodeName("node1"),
                     [Observation(VmUuid(UUID), NodeName("node1"), "running", NOW + 1)],
                     NOW + 1, NOW + 1)
    assert _changes(d) == [("starting", "running", "task", task.task_id, "admin")]


def test_history_entry_of_a_change() -> None:
    world, _vm, _ = world_in("stopped")
    (c,) = put(world, ALICE, "start").changes
    e = entry_of(c)
    assert (e.seq, e.status, e.previous, e.cause, e.principal) == (
        c.seq, "starting", "stopped", "task", "alice")
    assert e.status_change == NOW and e.task_id == c.task_id


def test_history_route_and_answers() -> None:
    assert route("GET", "/vm/web01/status/history") == Route(Kind.HISTORY, "web01", "history")
    assert route("GET", "/vm/web01/status/history/") == Route(Kind.HISTORY, "web01", "history")
    assert route("PUT", "/vm/web01/status/history").kind is Kind.ACTION  # 417 Bad action
    world, _vm, _ = world_in("stopped")
    d = req(world, ALICE, "GET", f"/vm/{HOST}/status/history", {"limit": "10", "before": 7})
    assert d.reply is None and isinstance(d.read, HistoryQuery)
    assert (d.read.vm_uuid, d.read.limit, d.read.before) == (UUID, 10, 7)
    for ident in (HOST, UUID):
        hidden = req(world, BOB, "GET", f"/vm/{ident}/status/history")
        assert hidden.reply is not None and hidden.read is None
        assert (hidden.reply.code, hidden.reply.body) == (404, {"detail": "VM not found"})
    bad = req(world, ALICE, "GET", f"/vm/{HOST}/status/history", {"limit": 0, "before": "x"})
    assert bad.reply is not None and bad.reply.code == 400
    assert bad.reply.body["status"] == "FAILURE"
    assert bad.reply.body["result"] == {"limit": [AT_LEAST_1],
                                        "before": ["Enter a whole number."]}


@pytest.mark.parametrize(
    ("data", "parsed"),
    [
        pytest.param({}, (50, None), id="defaults"),
        pytest.param({"limit": None, "before": None}, (50, None), id="nulls"),
        pytest.param({"limit": 1000, "before": "12"}, (1000, 12), id="max"),
        pytest.param({"limit": 2.0}, (2, None), id="integral-float"),
        pytest.param({"limit": 1001}, {"limit": [AT_MOST]}, id="over"),
        pytest.param({"limit": -1}, {"limit": [AT_LEAST_1]}, id="negative"),
        pytest.param({"limit": True}, {"limit": ["Enter a whole number."]}, id="bool"),
        pytest.param({"before": "9" * 5000}, {"before": ["Enter a whole number."]},
                     id="huge-digits"),
        pytest.param({"before": 0}, {"before": [AT_LEAST_1]}, id="before-0"),
        pytest.param({"before": 1.5}, {"before": ["Enter a whole number."]}, id="fraction"),
    ],
)
def test_history_params(data: dict[str, Any], parsed: object) -> None:
    assert parse_history(data) == parsed
