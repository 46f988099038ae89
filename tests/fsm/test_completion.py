"""docs/fsm.md §3.3, §3.4, §3.6: task results, deadlines, `current` answers, re-syncs."""

from __future__ import annotations

from typing import Any

import pytest

from vmd.fsm import Ignored, complete_task, expire_task, replies, start_resync
from vmd.model import (
    Action,
    Cause,
    NodeStatus,
    OutcomeKind,
    TaskId,
    TaskOutcome,
    TaskState,
    VmStatus,
)

from .helpers import ADMIN, ALICE, HOST, NODE, NOW, done, obs, put, req, task_of, world_in

S = VmStatus
K = OutcomeKind


@pytest.mark.parametrize(
    ("setup", "action", "data", "kind", "rc", "state", "status", "resync"),
    [
        pytest.param("stopped", "start", {}, K.SUCCESS, 0, "SUCCESS", S.RUNNING, False,
                     id="start-success"),
        pytest.param("stopped", "start", {}, K.NOOP, 0, "FAILURE", S.STOPPED, True,
                     id="start-noop"),
        pytest.param("stopped", "start", {}, K.FAILURE, 1, "FAILURE", S.STOPPED, True,
                     id="start-failure"),
        pytest.param("stopped", "start", {}, K.NOT_FOUND, 1, "FAILURE", S.NOTCREATED, False,
                     id="start-not-found"),
        pytest.param("running", "stop", {}, K.SUCCESS, 0, "SUCCESS", S.STOPPED, False,
                     id="stop-success"),
        pytest.param("running", "stop", {"freeze": True}, K.SUCCESS, 0, "SUCCESS", S.FROZEN,
                     False, id="stop-freeze-success"),
        pytest.param("running", "stop", {"freeze": True}, K.FAILURE, 1, "FAILURE", S.RUNNING,
                     True, id="stop-freeze-failure"),
        pytest.param("running", "stop", {}, K.NOOP, 0, "FAILURE", S.RUNNING, True,
                     id="stop-noop"),
        pytest.param("running", "stop", {}, K.NOT_FOUND, 1, "FAILURE", S.NOTCREATED, False,
                     id="stop-not-found"),
        pytest.param("running", "reboot", {}, K.SUCCESS, 0, "SUCCESS", S.RUNNING, False,
                     id="reboot-success"),
        pytest.param("running", "reboot", {"force": True}, K.FAILURE, 255, "FAILURE",
                     S.RUNNING, True, id="reboot-failure"),
        pytest.param("stopping", "stop", {"force": True}, K.SUCCESS, 0, "SUCCESS", S.STOPPED,
                     False, id="preempting-stop-success"),
        pytest.param("stopping", "stop", {"force": True}, K.FAILURE, 1, "FAILURE", S.RUNNING,
                     True, id="preempting-stop-failure-back-to-running"),
        pytest.param("stopping_observed", "stop", {"force": True}, K.FAILURE, 1, "FAILURE",
                     S.STOPPING, True, id="observed-stopping-stays-stopping"),
    ],
)
def test_power_result(setup: str, action: str, data: dict[str, Any], kind: OutcomeKind,
                      rc: int, state: str, status: VmStatus, resync: bool) -> None:
    world, vm, _ = world_in(setup)
    task = task_of(world, put(world, ALICE, action, data))
    seq = vm.seq
    message = f"Successfully did {action} for VM {HOST}" if kind is K.SUCCESS else "oops"
    d = done(world, task.task_id, kind, rc, message)
    assert d.ended == (task,) and task.state is TaskState(state) and task.ended == NOW + 10
    assert vm.status is status and vm.task_id is None and d.vm is vm
    assert d.resync == ((vm.uuid,) if resync else ())
    if kind is K.SUCCESS:
        assert task.result == {"returncode": 0, "message": message}
    else:
        assert task.result == {"returncode": rc, "message": message,
                               "detail": f"Got bad return code ({rc}). Error: {message}"}
    changed = status is not S.STOPPING
    assert len(d.changes) == int(changed) and vm.seq == seq + int(changed)
    if changed:
        (c,) = d.changes
        assert c.cause is Cause.TASK and c.task_id == task.task_id and c.time == NOW + 10
        assert c.status is status and c.seq == vm.seq
    assert list(world.tasks.pending_of(vm.uuid)) == []


def test_late_and_duplicate_results_are_dropped() -> None:
    world, vm, task = world_in("starting")
    assert task is not None
    first = done(world, task.task_id)
    assert vm.status is S.RUNNING and first.ended == (task,)
    snapshot = (vm.status, vm.seq, task.state, task.result)
    for d in (
        done(world, task.task_id, K.FAILURE, 1, "late"),
        done(world, task.task_id),
        expire_task(world, task.task_id, NOW + 999),
        done(world, TaskId("0-00000000-0000-4000-8000"), K.SUCCESS),
        expire_task(world, TaskId("nonsense"), NOW),
    ):
        assert d.dropped and d.ignored is Ignored.DROPPED and not d.changes and not d.ended
    assert (vm.status, vm.seq, task.state, task.result) == snapshot


@pytest.mark.parametrize(
    ("setup", "status"),
    [
        pytest.param("starting", S.STOPPED, id="start"),
        pytest.param("stopping", S.RUNNING, id="stop"),
    ],
)
def test_deadline(setup: str, status: VmStatus) -> None:
    world, vm, task = world_in(setup)
    assert task is not None
    d = expire_task(world, task.task_id, task.deadline)
    assert task.state is TaskState.REVOKED
    assert task.result == {"message": "Task deadline exceeded", "detail": "Task deadline exceeded"}
    assert vm.status is status and vm.task_id is None and d.resync == (vm.uuid,)
    (c,) = d.changes
    assert c.cause is Cause.TASK and c.task_id == task.task_id and c.time == task.deadline


def test_observed_target_then_result_changes_nothing() -> None:
    world, vm, task = world_in("starting")
    assert task is not None
    d = obs(world, "running", NOW + 1)
    # The watcher's report of the task's target is the task's change (protocol.md §9).
    (c,) = d.changes
    assert vm.status is S.RUNNING and c.cause is Cause.TASK
    assert (c.task_id, c.principal) == (task.task_id, task.principal)
    assert vm.task_id == task.task_id  # still in flight: a second task is refused
    assert put(world, ADMIN, "stop").reply.code == 409  # type: ignore[union-attr]
    seq = vm.seq
    d = done(world, task.task_id)
    assert task.state is TaskState.SUCCESS and vm.status is S.RUNNING and vm.seq == seq
    assert d.changes == () and d.resync == () and vm.task_id is None


def test_contradicting_observation_then_result() -> None:
    world, vm, task = world_in("starting")
    assert task is not None
    obs(world, "stopped", NOW + 1)
    assert vm.status is S.STOPPED
    d = done(world, task.task_id)  # the node said stopped after; ask it again
    assert vm.status is S.STOPPED and d.changes == () and d.resync == (vm.uuid,)
    assert task.state is TaskState.SUCCESS


def test_observed_stopping_while_starting_then_failure_keeps_node_view() -> None:
    world, vm, task = world_in("starting")
    assert task is not None
    obs(world, "stopping", NOW + 1)
    d = done(world, task.task_id, K.FAILURE, 1, "x")
    assert vm.status is S.STOPPING and d.changes == () and d.resync == (vm.uuid,)


def test_stop_freeze_ends_frozen_after_observed_stopped() -> None:
    world, vm, _ = world_in("running")
    task = task_of(world, put(world, ALICE, "stop", {"freeze": True}))
    obs(world, "stopped", NOW + 1)
    assert vm.status is S.STOPPED
    d = done(world, task.task_id, now=NOW + 5)
    assert vm.status is S.FROZEN and d.changes[0].previous is S.STOPPED
    assert d.changes[0].cause is Cause.TASK and d.resync == ()


def test_expired_after_observed_target_keeps_status() -> None:
    world, vm, task = world_in("stopping")
    assert task is not None
    obs(world, "stopped", NOW + 1)
    d = expire_task(world, task.task_id, task.deadline)
    assert vm.status is S.STOPPED and d.changes == () and d.resync == (vm.uuid,)


# -- current results ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("setup", "kind", "node_state", "status", "changed", "ignored"),
    [
        pytest.param("running", K.SUCCESS, "stopped", S.STOPPED, True, None, id="corrects"),
        pytest.param("running", K.SUCCESS, "running", S.RUNNING, False, None, id="equal"),
        pytest.param("running", K.SUCCESS, "installed", S.STOPPED, True, None,
                     id="installed-is-stopped"),
        pytest.param("running", K.SUCCESS, "failed", S.ERROR, True, None, id="failed-is-error"),
        pytest.param("running", K.NOT_FOUND, None, S.NOTCREATED, True, None, id="absent"),
        pytest.param("running", K.SUCCESS, None, S.NOTCREATED, True, None, id="absent-state"),
        pytest.param("running", K.SUCCESS, "provisioning", S.RUNNING, False, Ignored.IN_BETWEEN,
                     id="in-between"),
        pytest.param("error", K.SUCCESS, "running", S.RUNNING, True, None, id="error-recovers"),
    ],
)
def test_get_current_result(setup: str, kind: OutcomeKind, node_state: str | None,
                            status: VmStatus, changed: bool, ignored: Ignored | None) -> None:
    world, vm, _ = world_in(setup)
    task = task_of(world, req(world, ALICE, "GET", f"/vm/{HOST}/status/current"))
    d = done(world, task.task_id, kind, 0, f"VM {HOST} is {node_state}", state=node_state)
    assert task.state is TaskState.SUCCESS and vm.status is status
    assert task.result == {"hostname": HOST, "status": status.value, "status_changed": changed,
                           "message": f"VM {HOST} is {node_state}"}
    assert len(d.changes) == int(changed) and d.ignored is ignored
    if changed:
        assert d.changes[0].cause is Cause.NODE and d.changes[0].task_id == task.task_id


def test_get_current_result_older_than_observation_is_dropped() -> None:
    world, vm, _ = world_in("running")
    obs(world, "running", NOW + 50)
    task = task_of(world, req(world, ALICE, "GET", f"/vm/{HOST}/status/current"))
    d = done(world, task.task_id, state="stopped", change_time=NOW + 10)
    assert vm.status is S.RUNNING and d.ignored is Ignored.STALE
    assert task.result is not None and task.result["status_changed"] is False


def test_get_current_failure() -> None:
    world, vm, _ = world_in("running")
    task = task_of(world, req(world, ALICE, "GET", f"/vm/{HOST}/status/current"))
    d = done(world, task.task_id, K.FAILURE, 255, "node unreachable")
    assert task.state is TaskState.FAILURE and vm.status is S.RUNNING and d.resync == ()
    assert task.result == {"hostname": HOST, "returncode": 255, "message": "node unreachable",
                           "detail": "Got bad return code (255). Error: node unreachable"}


def test_put_current_applies_unconditionally() -> None:
    world, vm, _ = world_in("frozen")
    obs(world, "stopped", NOW + 100)
    task = task_of(world, put(world, ADMIN, "current", {"force": True}))
    d = done(world, task.task_id, state="running", change_time=NOW)  # frozen and older
    assert vm.status is S.RUNNING and vm.task_id is None
    (c,) = d.changes
    assert c.cause is Cause.ADMIN and c.previous is S.FROZEN and c.task_id == task.task_id
    assert task.result is not None and task.result["status_changed"] is True


@pytest.mark.parametrize(
    ("kind", "node_state", "status"),
    [
        pytest.param(K.SUCCESS, "running", S.RUNNING, id="node-running"),
        pytest.param(K.SUCCESS, "stopping", S.STOPPING, id="node-still-stopping"),
        pytest.param(K.SUCCESS, "ready", S.RUNNING, id="in-between-reverts"),
        pytest.param(K.FAILURE, None, S.RUNNING, id="failure-reverts"),
    ],
)
def test_put_current_superseding_a_stop(kind: OutcomeKind, node_state: str | None,
                                        status: VmStatus) -> None:
    world, vm, stop = world_in("stopping")
    task = task_of(world, put(world, ADMIN, "current", {"force": True}))
    assert stop is not None and stop.state is TaskState.REVOKED
    assert vm.status is S.STOPPING and vm.task_id == task.task_id
    assert put(world, ALICE, "stop", {"force": True}).reply.code == 409  # type: ignore[union-attr]
    late = done(world, stop.task_id)
    assert late.dropped
    d = done(world, task.task_id, kind, 0 if kind is K.SUCCESS else 1, "m", state=node_state)
    assert vm.status is status and vm.task_id is None
    assert d.resync == ((vm.uuid,) if kind is K.FAILURE else ())


def test_put_current_expiry_reverts_held_status() -> None:
    world, vm, _ = world_in("starting")
    task = task_of(world, put(world, ADMIN, "current", {"force": True}))
    d = expire_task(world, task.task_id, task.deadline)
    assert vm.status is S.STOPPED and d.resync == (vm.uuid,) and vm.task_id is None


def test_get_current_expiry_touches_nothing() -> None:
    world, vm, _ = world_in("running")
    task = task_of(world, req(world, ALICE, "GET", f"/vm/{HOST}/status/current"))
    d = expire_task(world, task.task_id, task.deadline)
    assert task.state is TaskState.REVOKED and d.vm is None and d.resync == ()
    assert vm.status is S.RUNNING


def test_resync_task() -> None:
    world, vm, _ = world_in("running")
    d = start_resync(world, vm.uuid, NOW)
    task = task_of(world, d)
    assert task.action is Action.CURRENT and task.params["resync"] is True and d.reply is None
    d = complete_task(world, task.task_id, TaskOutcome(K.SUCCESS, 0, "", "stopped", NOW + 1),
                      NOW + 2)
    assert vm.status is S.STOPPED and d.changes[0].cause is Cause.SYNC
    world.nodes[NODE].status = NodeStatus.UNREACHABLE
    assert start_resync(world, vm.uuid, NOW).ignored is Ignored.NODE_DOWN


def test_revoked_message_constants() -> None:
    assert replies.SUPERSEDED == "Superseded by forced status change"
    assert replies.DEADLINE_EXCEEDED == "Task deadline exceeded"
