"""The power requests: `PUT .../status/<action>` and `GET|PUT .../status/current`.

This is docs/fsm.md §3.3-§3.5 as ordered checks: the first rule that applies answers.
The codes and messages come from these checks and the explicit gate table below; the
machine is fired only once a request has passed them (a MachineError would be our bug).

The power slot: `Vm.task_id` is the one task that may move the VM (start, stop, reboot,
or an admin's PUT current). A request that would create a second one, or change the status
instantly, while it is taken answers 409 `VM has pending tasks`, even when a node
observation has already moved the VM out of starting/stopping. The only exception is a
forced stop of a VM in `stopping`: it preempts a graceful stop or reboot (which ends
REVOKED) and keeps that task's previous status; a forced stop already in flight answers
423 `VM is already stopping`. A VM in `stopping` with an empty slot was reported stopping
by its node (KVM): a forced stop is then an ordinary task whose previous status is
`stopping`. GET current tasks never take the slot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vmd.fsm import replies
from vmd.fsm.decision import Decision, StatusChange, change
from vmd.fsm.definitions import disk_resize
from vmd.fsm.lookup import resolve_vm
from vmd.fsm.params import PowerParams, parse_force, parse_power
from vmd.fsm.world import World, holds
from vmd.model import (
    NOT_OPERATIONAL,
    TRANSITIONAL,
    Action,
    Cause,
    NodeStatus,
    Principal,
    Reply,
    Task,
    TaskState,
    Vm,
    VmStatus,
)

S = VmStatus
# Enum members as plain module constants: `VmStatus.STOPPED` costs ~0.06 us per access
# (a metaclass attribute lookup), a module global ~0.006 us (bench/fsm_transitions.py);
# this is the hot path.
STOPPED, STARTING, RUNNING = S.STOPPED, S.STARTING, S.RUNNING
STOPPING, FROZEN, NOTCREATED = S.STOPPING, S.FROZEN, S.NOTCREATED
START, STOP, REBOOT = Action.START, Action.STOP, Action.REBOOT
ONLINE = NodeStatus.ONLINE
TASK_CAUSE, ADMIN_CAUSE = Cause.TASK, Cause.ADMIN
_HVM = frozenset({"kvm", "bhyve"})
_ACTIONS = {"start": START, "stop": STOP, "reboot": REBOOT}
_EVENTS = {START: "start", STOP: "stop", REBOOT: "reboot"}
_CURRENT_OK = frozenset({RUNNING, STOPPED, STOPPING, STARTING, S.ERROR})

_NODE_DOWN = replies.error(423, replies.NODE_NOT_OPERATIONAL)
_VM_NOT_OPERATIONAL = replies.error(423, replies.VM_NOT_OPERATIONAL)
_BAD_ACTION = replies.error(417, replies.BAD_ACTION)
_FORBIDDEN = replies.error(403, replies.PERMISSION_DENIED)
_PENDING_TASKS = replies.error(409, replies.PENDING_TASKS)
_ALREADY_STARTING = replies.error(423, replies.ALREADY_STARTING)
_ALREADY_STOPPING = replies.error(423, replies.ALREADY_STOPPING)
_TRY_FORCE = replies.error(423, replies.ALREADY_STOPPING_FORCE)
_NO_SHUTDOWN = replies.error(428, replies.NO_SHUTDOWN)
_UPDATE_WHILE_STOPPING = replies.error(428, replies.UPDATE_WHILE_STOPPING)
_UPDATE_FIRST = replies.error(428, replies.UPDATE_FIRST)
_HAS_SNAPSHOTS = replies.error(417, replies.HAS_SNAPSHOTS)
_FORCE_REQUIRED = replies.error(428, replies.FORCE_REQUIRED)
_TOO_MANY_TASKS = replies.error(429, replies.TOO_MANY_TASKS)


def _superseded() -> dict[str, Any]:
    return replies.revoked_result(replies.SUPERSEDED)


# Gate outcomes besides a Reply (docs/fsm.md §3.5 step 6).
_TASK = "task"
_FREEZE = "freeze"
_UNFREEZE = "unfreeze"


def _stop_stopping(p: PowerParams, admin: bool) -> Reply | str:
    return _TASK if p.force else _TRY_FORCE


def _stop_stopped(p: PowerParams, admin: bool) -> Reply | str:
    # A request with both freeze and unfreeze reads as freeze, except on a frozen VM.
    if p.freeze:
        return _FREEZE if admin else _FORBIDDEN
    return _BAD_ACTION


def _stop_frozen(p: PowerParams, admin: bool) -> Reply | str:
    if p.unfreeze:
        return _UNFREEZE if admin else _FORBIDDEN
    return _BAD_ACTION


def _stop_starting(p: PowerParams, admin: bool) -> Reply | str:
    return _BAD_ACTION if p.unfreeze and not p.freeze else _PENDING_TASKS


# The state gate table (docs/fsm.md §3.5), one cell per (action, operational status): the
# outcome, or the rule that picks it from the request's parameters and the principal.
_Cell = Reply | str | Callable[[PowerParams, bool], Reply | str]
_GATE: dict[Action, dict[VmStatus, _Cell]] = {
    START: {
        STOPPED: _TASK, STARTING: _ALREADY_STARTING, RUNNING: _BAD_ACTION,
        STOPPING: _PENDING_TASKS, FROZEN: _BAD_ACTION,
    },
    REBOOT: {
        STOPPED: _BAD_ACTION, STARTING: _PENDING_TASKS, RUNNING: _TASK,
        STOPPING: _ALREADY_STOPPING, FROZEN: _BAD_ACTION,
    },
    STOP: {
        STOPPED: _stop_stopped, STARTING: _stop_starting,
        RUNNING: _TASK,  # freeze: ends frozen; unfreeze: ignored
        STOPPING: _stop_stopping, FROZEN: _stop_frozen,
    },
}


def _gate(vm: Vm, action: Action, p: PowerParams, admin: bool) -> Reply | str:
    """The state gate table's cell for the VM's status (ignoring the power slot)."""
    cell = _GATE[action][vm.status]
    return cell(p, admin) if callable(cell) else cell


def _slot_conflict(vm: Vm, inflight: Task) -> Reply | None:
    """None when a forced stop of a stopping VM may preempt `inflight`, else the answer."""
    if vm.status is STOPPING and inflight.action in (STOP, REBOOT):
        if not inflight.params.get("force"):
            return None
        if inflight.action is STOP:
            return _ALREADY_STOPPING
    return _PENDING_TASKS



def _task_params(vm: Vm, action: Action, p: PowerParams, update: bool) -> dict[str, Any]:
    params: dict[str, Any] = {"hostname": vm.hostname, "update": update}
    if action is START:
        params["cdimage"] = p.cdimage
        params["cdimage_once"] = p.cdimage_once
        params["cdimage2"] = p.cdimage2
    else:
        params["force"] = p.force
        params["timeout"] = p.timeout
        if action is STOP:
            params["freeze"] = p.freeze
    if update:
        params["definition"] = vm.pending_definition
    return params


def put_action(
    world: World, principal: Principal, ident: str, action_name: str,
    data: Mapping[str, Any], now: float, *, busy: bool = False,
) -> Decision:
    """`PUT /vm/<vm>/status/<action>` for every action but `current` (§3.5).

    `busy`: the principal has as many tasks pending as it may (the daemon's
    `max_pending_tasks`): a request that passed every check and would create a task
    answers 429 `Too many pending tasks` instead (a vmd extension); no other answer changes.
    """
    vm = resolve_vm(world.vms, ident, principal)
    if isinstance(vm, Reply):
        return Decision(reply=vm)
    node = world.nodes.get(vm.node)
    if node is None or node.status is not ONLINE:
        return Decision(reply=_NODE_DOWN)
    if vm.status in NOT_OPERATIONAL:
        return Decision(reply=_VM_NOT_OPERATIONAL)
    action = _ACTIONS.get(action_name)
    if action is None:
        return Decision(reply=_BAD_ACTION)
    p = parse_power(action, data, vm.brand in _HVM, node.isos, _timeout(world, vm, action))
    if not isinstance(p, PowerParams):
        return Decision(reply=replies.failure(p, world.new_task_id()))
    gate = _gate(vm, action, p, principal.admin)
    if isinstance(gate, Reply):
        return Decision(reply=gate)
    inflight = None if vm.task_id is None else world.tasks.get(vm.task_id)
    if inflight is not None:
        conflict = _PENDING_TASKS if gate is not _TASK else _slot_conflict(vm, inflight)
        if conflict is not None:
            return Decision(reply=conflict)
    if gate is not _TASK:
        return _freeze_or_unfreeze(world, vm, gate, now, principal.name)
    update = p.update and bool(vm.pending_definition)  # §6: only when something is pending
    refusal = _refusal_before_task(world, vm, action, update, busy)
    if refusal is not None:
        return Decision(reply=refusal)
    return _create(world, vm, action, p, update, inflight, now, principal.name)


def _timeout(world: World, vm: Vm, action: Action) -> int:
    """The default graceful-stop timeout of `action` on `vm` (§3.5's parameter table)."""
    if action is START:
        return 0  # not used by a start
    if vm.ostype is not None and vm.is_windows:
        return world.settings.stop_timeout_windows
    return world.settings.stop_timeout


def _freeze_or_unfreeze(world: World, vm: Vm, gate: str, now: float, user: str) -> Decision:
    """An admin's instant freeze or unfreeze (the gate's 200 cells): no task."""
    c = change(vm, gate, now, ADMIN_CAUSE, None, user)
    message = (replies.frozen_message if gate is _FREEZE else replies.unfrozen_message)(
        vm.hostname
    )
    return Decision(
        reply=replies.success({"message": message}, world.new_task_id()), vm=vm, changes=(c,)
    )


def _refusal_before_task(
    world: World, vm: Vm, action: Action, update: bool, busy: bool,
) -> Reply | None:
    """Steps 7-8 (no_shutdown, updates) and vmd's 429 for a request that passed the gate
    and would create a task: the answer that refuses it, None when it may."""
    no_shutdown = world.settings.no_shutdown
    if action is not START and (vm.uuid in no_shutdown or vm.hostname in no_shutdown):
        return _NO_SHUTDOWN
    if update:
        if vm.status is STOPPING:
            return _UPDATE_WHILE_STOPPING
        if disk_resize(vm.pending_definition, vm.active_definition):
            if action is START:
                return _UPDATE_FIRST
            if vm.snapshots:
                return _HAS_SNAPSHOTS
    return _TOO_MANY_TASKS if busy else None


def _create(
    world: World, vm: Vm, action: Action, p: PowerParams, update: bool,
    inflight: Task | None, now: float, user: str,
) -> Decision:
    """Step 9: the task, and the VM in its transitional state before the reply is sent."""
    settings = world.settings
    task_id = world.new_task_id()
    if action is START:
        deadline = now + settings.start_deadline
    else:
        deadline = now + p.deadline_timeout + settings.stop_grace
    ended: tuple[Task, ...] = ()
    changes: tuple[StatusChange, ...] = ()
    if vm.status is STOPPING:
        # A forced stop while stopping: no status change; preempt the graceful task.
        previous = STOPPING
        if inflight is not None:
            previous = inflight.previous_status or STOPPING
            world.tasks.end(inflight, TaskState.REVOKED, _superseded(), now)
            ended = (inflight,)
    else:
        previous = vm.status
        changes = (change(vm, _EVENTS[action], now, TASK_CAUSE, task_id, user),)
    task = Task(
        task_id, vm.uuid, action, "PUT", _task_params(vm, action, p, update), now, deadline,
        vm.owner_uuid, vm.node, previous_status=previous, principal=user,
    )
    vm.task_id = task_id
    world.tasks.add_pending(task)
    return Decision(
        Reply(201, {"status": "PENDING", "result": None, "task_id": task_id}), vm, changes, task,
        ended,
    )


def get_current(
    world: World, principal: Principal, ident: str, now: float, *, busy: bool = False,
    join: Callable[[Task], bool] | None = None,
) -> Decision:
    """`GET /vm/<vm>/status/current` (§3.3): a `current` task outside the power slot.

    While a GET current of the VM is pending, the request joins it: 201 with that task's
    id, no new task (so 30 readers of one VM make one node task, not 30). `join(task)`
    may refuse (the daemon does when the task has as many stream subscribers as it
    keeps): a new task is made then. `busy` as for `put_action`, checked after the join.
    """
    vm = resolve_vm(world.vms, ident, principal)
    if isinstance(vm, Reply):
        return Decision(reply=vm)
    if vm.status not in _CURRENT_OK:
        return Decision(reply=_VM_NOT_OPERATIONAL)
    node = world.nodes.get(vm.node)
    if node is None or node.status is not ONLINE:
        return Decision(reply=_NODE_DOWN)
    pending = pending_read(world, vm)
    if pending is not None and (join is None or join(pending)):
        return Decision(reply=replies.pending(pending.task_id))
    if busy:
        return Decision(reply=_TOO_MANY_TASKS)
    task = _current_task(world, vm, "GET", {}, now, principal.name)
    return Decision(reply=replies.pending(task.task_id), new_task=task)


def pending_read(world: World, vm: Vm) -> Task | None:
    """The VM's pending GET current task (the newest if several), None if none."""
    found = None
    for task in world.tasks.pending_of(vm.uuid):
        if task.action is Action.CURRENT and task.method == "GET":
            found = task
    return found


def _current_task(
    world: World, vm: Vm, method: str, extra: dict[str, Any], now: float, user: str,
    previous: VmStatus | None = None,
) -> Task:
    task_id = world.new_task_id()
    task = Task(
        task_id, vm.uuid, Action.CURRENT, method, {"hostname": vm.hostname, **extra}, now,
        now + world.settings.current_deadline, vm.owner_uuid, vm.node, previous_status=previous,
        principal=user,
    )
    world.tasks.add(task)
    return task


def put_current(
    world: World, principal: Principal, ident: str, data: Mapping[str, Any], now: float
) -> Decision:
    """`PUT /vm/<vm>/status/current` (§3.4): an admin's forced re-sync, in the power slot.

    A task in flight is superseded at once (REVOKED, `Superseded by forced status change`);
    the new task keeps its previous status and holds the VM in its transitional status
    until the node's answer is applied unconditionally (vmd.fsm.completion).
    """
    vm = resolve_vm(world.vms, ident, principal)
    if isinstance(vm, Reply):
        return Decision(reply=vm)
    node = world.nodes.get(vm.node)
    if node is None or node.status is not ONLINE:
        return Decision(reply=_NODE_DOWN)
    if not principal.admin:
        return Decision(reply=_FORBIDDEN)
    force = parse_force(data)
    if not isinstance(force, bool):
        return Decision(reply=replies.failure(force, world.new_task_id()))
    busy = vm.task_id is not None or vm.status in TRANSITIONAL
    if busy and not force:
        return Decision(reply=_FORCE_REQUIRED)
    if not force and vm.status in (FROZEN, NOTCREATED):
        return Decision(reply=_VM_NOT_OPERATIONAL)
    inflight = None if vm.task_id is None else world.tasks.get(vm.task_id)
    extra: dict[str, Any] = {"force": force}
    previous = None
    ended: tuple[Task, ...] = ()
    if inflight is not None:
        held = holds(inflight)
        if held is not None and vm.status is held:
            extra["holds"] = held.value
            previous = inflight.previous_status
        world.tasks.end(inflight, TaskState.REVOKED, _superseded(), now)
        ended = (inflight,)
    task = _current_task(world, vm, "PUT", extra, now, principal.name, previous)
    vm.task_id = task.task_id
    return Decision(reply=replies.pending(task.task_id), vm=vm, new_task=task, ended=ended)
