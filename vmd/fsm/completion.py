"""Task results and deadlines (docs/fsm.md §3.3, §3.4, §3.6): every task ends exactly once.

A result or deadline for a task that has already ended (or that vmd does not know) changes
nothing and is returned as `Ignored.DROPPED`, so late and duplicate results are harmless.

Power tasks (start, stop, reboot):
- The task holds its VM in a transitional status (starting/stopping). If a node
  observation has moved the VM out of it meanwhile, the node's report is newer truth and
  the result changes no status, except that a stop+freeze that succeeds ends `frozen` when
  the VM is `stopped`; a re-sync is requested when the result contradicts the status.
- SUCCESS → running (start, reboot), stopped, or frozen (stop with freeze);
  result `{"returncode": 0, "message"}`.
- NOT_FOUND → FAILURE and the VM becomes `notcreated`.
- NOOP / FAILURE → FAILURE with `detail` `Got bad return code (<rc>). Error: <message>`,
  the VM goes back to the status it had before the request, and a re-sync is requested.
- Deadline → REVOKED `Task deadline exceeded`, the VM leaves its transitional status as on
  failure, and a re-sync is requested (the daemon sends it once the node is online).
A VM reported `stopping` by its node before a forced stop keeps `stopping` on failure
(its previous status); the re-sync resolves it.

`current` tasks: the result is `{"hostname", "status", "status_changed", "message"}`; the
node's state is applied with the rules of vmd.fsm.observe (GET), or unconditionally
(PUT, cause `admin`: even a frozen or stale VM is set to what the node reports).
"""

from __future__ import annotations

from typing import Any

from vmd.fsm import replies
from vmd.fsm.decision import Decision, Ignored, StatusChange, change
from vmd.fsm.observe import apply_observed, map_node_state
from vmd.fsm.world import World, holds
from vmd.model import (
    Action,
    Cause,
    NodeStatus,
    OutcomeKind,
    Task,
    TaskId,
    TaskOutcome,
    TaskState,
    Vm,
    VmStatus,
    VmUuid,
)

S = VmStatus
_SUCCESS_EVENT = {Action.START: "started", Action.REBOOT: "rebooted", Action.STOP: "stopped"}
_TARGET = {Action.START: S.RUNNING, Action.REBOOT: S.RUNNING, Action.STOP: S.STOPPED}


def _dropped() -> Decision:
    return Decision(ignored=Ignored.DROPPED)


def _failure_result(outcome: TaskOutcome) -> dict[str, Any]:
    return {
        "returncode": outcome.returncode,
        "message": outcome.message,
        "detail": replies.bad_return_code(outcome.returncode, outcome.message),
    }


def _release(vm: Vm, task: Task) -> bool:
    """Free the power slot if `task` holds it; True when it did."""
    if vm.task_id == task.task_id:
        vm.task_id = None
        return True
    return False


def _revert(vm: Vm, task: Task, now: float) -> tuple[StatusChange, ...]:
    """Back to the status before the request, if the task still holds the VM."""
    held = holds(task)
    previous = task.previous_status
    if held is None or vm.status is not held or previous is None or previous is held:
        return ()
    return (change(vm, f"revert_{previous.value}", now, Cause.TASK, task.task_id,
                   task.principal),)


def complete_task(world: World, task_id: TaskId, outcome: TaskOutcome, now: float) -> Decision:
    """Apply a node agent's result for a task."""
    task = world.tasks.get(task_id)
    if task is None or task.done:
        return _dropped()
    vm = world.vms.get(task.vm_uuid)
    if vm is None:  # vmd never forgets a VM; a task without one is a bug
        raise AssertionError(f"task {task_id} of unknown VM {task.vm_uuid}")
    if task.action is Action.CURRENT:
        return _complete_current(world, vm, task, outcome, now)
    _release(vm, task)
    _take_definition(vm, task, outcome)
    resync: tuple[VmUuid, ...] = ()
    changes: tuple[StatusChange, ...] = ()
    held = vm.status is holds(task)
    kind = outcome.kind
    if kind is OutcomeKind.SUCCESS:
        result = {"returncode": outcome.returncode, "message": outcome.message}
        world.tasks.end(task, TaskState.SUCCESS, result, now)
        freeze = task.action is Action.STOP and bool(task.params.get("freeze"))
        target = S.FROZEN if freeze else _TARGET[task.action]
        if held or (freeze and vm.status is S.STOPPED):
            event = "frozen" if freeze else _SUCCESS_EVENT[task.action]
            changes = (change(vm, event, now, Cause.TASK, task_id, task.principal),)
        elif vm.status is not target:
            resync = (vm.uuid,)
    else:
        world.tasks.end(task, TaskState.FAILURE, _failure_result(outcome), now)
        if not held:
            resync = (vm.uuid,)
        elif kind is OutcomeKind.NOT_FOUND:
            changes = (change(vm, "vanished", now, Cause.TASK, task_id, task.principal),)
        else:
            changes = _revert(vm, task, now)
            resync = (vm.uuid,)
    return Decision(vm=vm, changes=changes, ended=(task,), resync=resync)


def _take_definition(vm: Vm, task: Task, outcome: TaskOutcome) -> None:
    """§6: after a successful update the pending change is cleared and the active
    definition is the one re-read from the node (unless a newer change was staged)."""
    if outcome.definition is not None:
        vm.active_definition = outcome.definition
        if vm.pending_definition == task.params.get("definition"):
            vm.pending_definition = None


def _complete_current(
    world: World, vm: Vm, task: Task, outcome: TaskOutcome, now: float
) -> Decision:
    in_slot = _release(vm, task)
    forced = task.method == "PUT"
    kind = outcome.kind
    changes: tuple[StatusChange, ...] = ()
    ignored: Ignored | None = None
    seen = vm.observed_at
    node_changed = False
    if kind is OutcomeKind.SUCCESS or kind is OutcomeKind.NOT_FOUND:
        state = None if kind is OutcomeKind.NOT_FOUND else outcome.state
        status = map_node_state(state)
        if status is None:
            ignored = Ignored.IN_BETWEEN
            if in_slot:
                changes = _revert(vm, task, now)
        elif forced:
            if status is not vm.status:
                changes = (
                    change(vm, f"force_{status.value}", now, Cause.ADMIN, task.task_id,
                           task.principal),
                )
                node_changed = True
            if outcome.change_time is not None and (
                vm.observed_at is None or outcome.change_time > vm.observed_at
            ):
                vm.observed_at = outcome.change_time
        else:
            cause = Cause.SYNC if task.params.get("resync") else Cause.NODE
            c, ignored = apply_observed(
                vm, status, outcome.change_time, now, cause, task.task_id
            )
            if c is not None:
                changes = (c,)
                node_changed = True
        result = {
            "hostname": vm.hostname,
            "status": vm.status.value if status is None else status.value,
            "status_changed": node_changed,
            "message": outcome.message,
        }
        world.tasks.end(task, TaskState.SUCCESS, result, now)
        resync: tuple[VmUuid, ...] = ()
    else:
        result = {"hostname": vm.hostname, **_failure_result(outcome)}
        world.tasks.end(task, TaskState.FAILURE, result, now)
        changes = _revert(vm, task, now) if in_slot else ()
        resync = (vm.uuid,) if in_slot else ()
    dirty = in_slot or bool(changes) or vm.observed_at != seen
    return Decision(
        vm=vm if dirty else None,
        changes=changes, ended=(task,), resync=resync, ignored=ignored,
    )


def expire_task(world: World, task_id: TaskId, now: float) -> Decision:
    """The task's deadline passed: REVOKED, and its VM leaves its transitional status."""
    task = world.tasks.get(task_id)
    if task is None or task.done:
        return _dropped()
    revoked = replies.revoked_result(replies.DEADLINE_EXCEEDED)
    world.tasks.end(task, TaskState.REVOKED, revoked, now)
    vm = world.vms.get(task.vm_uuid)
    if vm is None or not _release(vm, task):
        return Decision(ended=(task,))
    return Decision(vm=vm, changes=_revert(vm, task, now), ended=(task,), resync=(vm.uuid,))


def start_resync(world: World, vm_uuid: VmUuid, now: float) -> Decision:
    """A re-sync of one VM: an internal `current` task (its answer applies with cause
    `sync`). Waits (`Ignored.NODE_DOWN`) while the VM's node is not online."""
    vm = world.vms.get(vm_uuid)
    if vm is None:
        return Decision(ignored=Ignored.UNKNOWN_VM)
    node = world.nodes.get(vm.node)
    if node is None or node.status is not NodeStatus.ONLINE:
        return Decision(ignored=Ignored.NODE_DOWN)
    task_id = world.new_task_id()
    task = Task(
        task_id, vm.uuid, Action.CURRENT, "GET", {"hostname": vm.hostname, "resync": True},
        now, now + world.settings.current_deadline, vm.owner_uuid, vm.node,
    )
    world.tasks.add(task)
    return Decision(new_task=task)
