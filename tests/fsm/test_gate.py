"""docs/fsm.md §3.5: the state gate table, cell by cell, for an admin and for the owner.

Every status (including a `stopping` that the node reported without a task, and the two
non-operational ones) x every request column. A 201 row also checks the task and the
transitional status set before the reply; a 200 row the instant admin change; an error
row that nothing changed at all.
"""

from __future__ import annotations

from typing import Any

import pytest

from vmd.fsm import is_task_id, replies
from vmd.model import Action, Cause, Principal, TaskState, VmStatus

from .helpers import ADMIN, ALICE, HOST, SETUPS, put, world_in

S = VmStatus
COLUMNS: dict[str, tuple[str, dict[str, Any]]] = {
    "start": ("start", {}),
    "stop": ("stop", {}),
    "stop_force": ("stop", {"force": True}),
    "reboot": ("reboot", {}),
    "reboot_force": ("reboot", {"force": True}),
    "stop_freeze": ("stop", {"freeze": True}),
    "stop_freeze_force": ("stop", {"freeze": True, "force": True}),
    "stop_unfreeze": ("stop", {"unfreeze": True}),
    "stop_unfreeze_force": ("stop", {"unfreeze": True, "force": True}),
    "stop_freeze_unfreeze": ("stop", {"freeze": True, "unfreeze": True}),
}

BAD = (417, replies.BAD_ACTION)
PENDING = (409, replies.PENDING_TASKS)
TRY_FORCE = (423, replies.ALREADY_STOPPING_FORCE)
STOPPING = (423, replies.ALREADY_STOPPING)
NOT_OP = (423, replies.VM_NOT_OPERATIONAL)
TASK = (201, None)
FREEZE = (200, replies.frozen_message(HOST))
UNFREEZE = (200, replies.unfrozen_message(HOST))
FORBIDDEN = (403, replies.PERMISSION_DENIED)

# The gate table of §3.5 (admin), plus the node-observed stopping and step 3 rows.
GATE: dict[str, dict[str, tuple[int, str | None]]] = {
    "stopped": {
        "start": TASK, "stop": BAD, "stop_force": BAD, "reboot": BAD, "reboot_force": BAD,
        "stop_freeze": FREEZE, "stop_freeze_force": FREEZE, "stop_unfreeze": BAD,
        "stop_unfreeze_force": BAD, "stop_freeze_unfreeze": FREEZE,
    },
    "starting": {
        "start": (423, replies.ALREADY_STARTING), "stop": PENDING, "stop_force": PENDING,
        "reboot": PENDING, "reboot_force": PENDING, "stop_freeze": PENDING,
        "stop_freeze_force": PENDING, "stop_unfreeze": BAD, "stop_unfreeze_force": BAD,
        "stop_freeze_unfreeze": PENDING,
    },
    "running": {
        "start": BAD, "stop": TASK, "stop_force": TASK, "reboot": TASK, "reboot_force": TASK,
        "stop_freeze": TASK, "stop_freeze_force": TASK, "stop_unfreeze": TASK,
        "stop_unfreeze_force": TASK, "stop_freeze_unfreeze": TASK,
    },
    "stopping": {
        "start": PENDING, "stop": TRY_FORCE, "stop_force": TASK, "reboot": STOPPING,
        "reboot_force": STOPPING, "stop_freeze": TRY_FORCE, "stop_freeze_force": TASK,
        "stop_unfreeze": TRY_FORCE, "stop_unfreeze_force": TASK,
        "stop_freeze_unfreeze": TRY_FORCE,
    },
    "frozen": {
        "start": BAD, "stop": BAD, "stop_force": BAD, "reboot": BAD, "reboot_force": BAD,
        "stop_freeze": BAD, "stop_freeze_force": BAD, "stop_unfreeze": UNFREEZE,
        "stop_unfreeze_force": UNFREEZE, "stop_freeze_unfreeze": UNFREEZE,
    },
    "notcreated": dict.fromkeys(COLUMNS, NOT_OP),
    "error": dict.fromkeys(COLUMNS, NOT_OP),
}
GATE["stopping_observed"] = dict(GATE["stopping"])

def _expected(setup: str, column: str, principal: Principal) -> tuple[int, str | None]:
    code, message = GATE[setup][column]
    if code == 200 and not principal.admin:
        return FORBIDDEN
    return code, message


ROWS = [
    pytest.param(setup, column, who, id=f"{setup}-{column}-{who.name}")
    for setup in SETUPS
    for column in COLUMNS
    for who in (ADMIN, ALICE)
]


@pytest.mark.parametrize(("setup", "column", "principal"), ROWS)
def test_gate_cell(setup: str, column: str, principal: Principal) -> None:
    world, vm, inflight = world_in(setup)
    before = (vm.status, vm.seq, vm.status_change, vm.task_id)
    action, data = COLUMNS[column]
    code, message = _expected(setup, column, principal)

    d = put(world, principal, action, dict(data))

    assert d.reply is not None
    assert d.reply.code == code, d.reply
    if code == 201:
        task = d.new_task
        assert task is not None
        assert d.reply.body == {"status": "PENDING", "result": None, "task_id": task.task_id}
        assert vm.task_id == task.task_id and world.tasks.get(task.task_id) is task
        assert task.action is Action(action) and task.method == "PUT"
        assert vm.status is (S.STARTING if action == "start" else S.STOPPING)
        if setup == "stopping":  # a forced stop preempts the graceful one
            assert inflight is not None and d.ended == (inflight,)
            assert inflight.state is TaskState.REVOKED
            assert inflight.result == replies.revoked_result(replies.SUPERSEDED)
            assert task.previous_status is S.RUNNING and d.changes == ()
            assert vm.seq == before[1]
        elif setup == "stopping_observed":
            assert task.previous_status is S.STOPPING and d.changes == () and d.ended == ()
        else:
            (c,) = d.changes
            assert (c.previous, c.status, c.cause, c.task_id) == (
                before[0], vm.status, Cause.TASK, task.task_id)
            assert c.seq == before[1] + 1 == vm.seq and vm.status_change == c.time
            assert task.previous_status is before[0]
    elif code == 200:
        assert d.reply.body["status"] == "SUCCESS"
        assert d.reply.body["result"] == {"message": message}
        assert is_task_id(d.reply.body["task_id"])
        assert world.tasks.get(d.reply.body["task_id"]) is None and d.new_task is None
        (c,) = d.changes
        assert c.cause is Cause.ADMIN and c.task_id is None and c.seq == before[1] + 1
        assert vm.status is (S.FROZEN if message == FREEZE[1] else S.STOPPED)
    else:
        assert d.reply.body == {"detail": message}
        assert (vm.status, vm.seq, vm.status_change, vm.task_id) == before
        assert d.changes == () and d.new_task is None and d.ended == ()
    if inflight is not None and not (setup == "stopping" and code == 201):
        assert inflight.state is TaskState.PENDING and world.tasks.get(inflight.task_id)


def test_running_stop_freeze_ends_frozen_unfreeze_ignored() -> None:
    world, _, _ = world_in("running")
    d = put(world, ALICE, "stop", {"freeze": True})
    assert d.new_task is not None and d.new_task.params["freeze"] is True
    world2, _, _ = world_in("running")
    d2 = put(world2, ALICE, "stop", {"unfreeze": True})
    assert d2.new_task is not None and "unfreeze" not in d2.new_task.params
    assert d2.new_task.params["freeze"] is False
