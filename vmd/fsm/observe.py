"""Node observations and full syncs (docs/fsm.md §2 mapping, §4, §5).

The node agents report every observed state change with the node's change time; this
module decides which of them change vmd's view. It is also the rule a `current` task's
answer goes through (vmd.fsm.completion), so a GET current corrects vmd like upstream.

Rules, in order (for a VM vmd knows):
1. A report from another node than the VM's is ignored (two VMs with one uuid must not
   fight), unless the VM is `notcreated` there and present here: it moved, follow it.
2. In-between node states (`ready`, `provisioning`, ...) and unknown ones: ignored.
3. Older than the last applied change of the VM → dropped (docs/fsm.md §5, "by change
   time"): older than the last applied observation (`Vm.observed_at`) or than the VM's
   `status_change` (which vmd's own changes stamp with its clock). So a full sync listed
   just before a start was decided cannot pull the VM back from `starting` to `stopped`.
   An accepted observation, even an equal one, moves `observed_at` forward. The answer of
   a `current` re-sync is the exception (vmd.fsm.completion uses `apply_observed`, which
   compares node times only): a re-sync after a failed task must converge even when the
   node's clock is behind vmd's. Keep nodes and daemon NTP-synchronised: a node clock
   behind vmd's by X seconds hides that node's events for X seconds after a vmd-made
   change (the periodic full sync then catches up).
4. Equal to the current status → nothing.
5. `frozen` → nothing (flagged `Ignored.FROZEN` unless the node says stopped, which is
   what a frozen VM is).
6. Otherwise applied, whatever task is in flight (its result will then change nothing,
   see vmd.fsm.completion), with `status_change` = the node's change time.

Attribution (protocol.md §9): an applied observation that takes the VM along the path of
its in-flight power task (the task in the power slot, still pending) is that task's
change: `cause: task`, the task's `task_id` and `principal`. The path: a start's
`starting → running`; a stop's `stopping → stopped`; a reboot's `stopping → running`,
and, for a reboot the node carries out as a halt and a boot, `stopping → stopped` and
`stopped → running`. The watcher usually reports the target state before the agent's
result arrives; the result then finds the VM already there and adds no second change.
Anything else (a crash, an operator's vmadm) is `cause: node` (`sync` for full syncs),
with no principal.

A VM seen for the first time is added (from the node's VM object) and, unless the node
reports an in-between state, applied from `notcreated` (seq 1). A full sync is the node's
whole listing: every VM of that node it does not list is observed absent (→ notcreated),
but those it listed with a value the daemon could not keep (`keep`): they keep their record.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from vmd.fsm.decision import Decision, Ignored, StatusChange, change
from vmd.fsm.world import World
from vmd.model import (
    Action,
    Cause,
    JsonObject,
    NodeName,
    Observation,
    TaskId,
    Vm,
    VmStatus,
    VmUuid,
)

S = VmStatus
NODE_STATES: dict[str, VmStatus] = {
    "running": S.RUNNING,
    "stopped": S.STOPPED,
    "installed": S.STOPPED,
    "down": S.STOPPED,
    "stopping": S.STOPPING,
    "failed": S.ERROR,
}
IN_BETWEEN = frozenset(
    {"ready", "shutting_down", "incomplete", "configured", "provisioning", "receiving"}
)
_OBSERVE = {s: f"observe_{s.value}" for s in NODE_STATES.values()} | {
    S.NOTCREATED: "observe_notcreated"
}
# (from, to) moves that are a power task's own doing (see "Attribution" above).
TASK_PATHS: dict[Action, frozenset[tuple[VmStatus, VmStatus]]] = {
    Action.START: frozenset({(S.STARTING, S.RUNNING)}),
    Action.STOP: frozenset({(S.STOPPING, S.STOPPED)}),
    Action.REBOOT: frozenset({
        (S.STOPPING, S.RUNNING), (S.STOPPING, S.STOPPED), (S.STOPPED, S.RUNNING)}),
}


def map_node_state(state: str | None) -> VmStatus | None:
    """vmd's status for a node-side state; None when the state is to be ignored."""
    if state is None:
        return S.NOTCREATED
    return NODE_STATES.get(state)


def attribution(
    world: World, vm: Vm, status: VmStatus
) -> tuple[TaskId, str | None] | None:
    """(task_id, principal) of the in-flight power task whose path the move to `status`
    follows, None when the move is not a task's (see "Attribution" above)."""
    task_id = vm.task_id
    if task_id is None:
        return None
    task = world.tasks.get(task_id)
    if task is None or task.done:
        return None
    path = TASK_PATHS.get(task.action)
    if path is None or (vm.status, status) not in path:
        return None
    return task_id, task.principal


def apply_observed(
    vm: Vm, status: VmStatus, change_time: float | None, now: float, cause: Cause,
    task_id: TaskId | None = None, principal: str | None = None,
) -> tuple[StatusChange | None, Ignored | None]:
    """Rules 3-6 for one VM; `change_time` None (not known) skips the age rule."""
    if change_time is not None:
        if vm.observed_at is not None and change_time < vm.observed_at:
            return None, Ignored.STALE
        vm.observed_at = change_time
    if status is vm.status:
        return None, None
    if vm.status is S.FROZEN:
        return None, None if status is S.STOPPED else Ignored.FROZEN
    time = now if change_time is None else change_time
    return change(vm, _OBSERVE[status], time, cause, task_id, principal), None


def _ostype(obj: JsonObject) -> str | None:
    found: str | None = None
    for key in ("internal_metadata", "tags"):
        section = obj.get(key)
        value = section.get("ostype") if isinstance(section, dict) else None
        if isinstance(value, str) and value:
            if value.lower() == "windows":
                return value
            found = found or value
    return found


def _str(obj: JsonObject, key: str, default: str) -> str:
    value: Any = obj.get(key)
    return value if isinstance(value, str) and value else default


def vm_from_object(uuid: VmUuid, node: NodeName, obj: JsonObject) -> Vm:
    """A new `Vm` record from the node's VM object (status notcreated until applied)."""
    snapshots = obj.get("snapshots")
    return Vm(
        uuid=uuid,
        hostname=_str(obj, "hostname", uuid),
        alias=_str(obj, "alias", ""),
        owner_uuid=_str(obj, "owner_uuid", ""),
        node=node,
        brand=_str(obj, "brand", "kvm"),
        ostype=_ostype(obj),
        status=S.NOTCREATED,
        active_definition=obj,
        snapshots=len(snapshots) if isinstance(snapshots, list) else 0,
    )


def _refresh(world: World, vm: Vm, obj: JsonObject | None) -> bool:
    """Take the node's VM object as the VM's active definition; True when anything changed."""
    if obj is None or obj is vm.active_definition or obj == vm.active_definition:
        return False
    fresh = vm_from_object(vm.uuid, vm.node, obj)
    if fresh.hostname != vm.hostname or fresh.owner_uuid != vm.owner_uuid:
        world.vms.update(vm, hostname=fresh.hostname, owner_uuid=fresh.owner_uuid)
    vm.alias = fresh.alias
    vm.brand = fresh.brand
    vm.ostype = fresh.ostype
    vm.snapshots = fresh.snapshots
    vm.active_definition = obj
    return True


def observe(world: World, obs: Observation, now: float, *, cause: Cause = Cause.NODE) -> Decision:
    """Apply one node observation (cause `node`, or `sync` for full syncs and re-syncs)."""
    vm = world.vms.get(obs.uuid)
    status = map_node_state(obs.state)
    if vm is None:
        return _first_seen(world, obs, status, cause)
    dirty = moved = False
    if obs.node != vm.node:
        if obs.state is None or vm.status is not S.NOTCREATED:
            return Decision(ignored=Ignored.FOREIGN_NODE)
        world.vms.update(vm, node=obs.node)
        vm.observed_at = None  # another node, another clock
        dirty = moved = True
    dirty = _refresh(world, vm, obs.vm) or dirty
    if status is None:
        return Decision(vm=vm if dirty else None, ignored=Ignored.IN_BETWEEN)
    if not moved and vm.status_change is not None and obs.change_time < vm.status_change:
        return Decision(vm=vm if dirty else None, ignored=Ignored.STALE)
    seen = vm.observed_at
    owner = attribution(world, vm, status)
    if owner is None:
        c, ignored = apply_observed(vm, status, obs.change_time, now, cause)
    else:
        c, ignored = apply_observed(vm, status, obs.change_time, now, Cause.TASK, *owner)
    if c is not None:
        return Decision(vm=vm, changes=(c,))
    dirty = dirty or vm.observed_at != seen
    return Decision(vm=vm if dirty else None, ignored=ignored)


def _first_seen(
    world: World, obs: Observation, status: VmStatus | None, cause: Cause
) -> Decision:
    if obs.state is None or obs.vm is None:
        return Decision(ignored=Ignored.UNKNOWN_VM)
    vm = vm_from_object(obs.uuid, obs.node, obs.vm)
    vm.observed_at = obs.change_time
    world.vms.add(vm)
    if status is None or status is S.NOTCREATED:
        return Decision(vm=vm, new_vm=vm, ignored=Ignored.IN_BETWEEN)
    c = change(vm, _OBSERVE[status], obs.change_time, cause, None)
    return Decision(vm=vm, new_vm=vm, changes=(c,))


def expand_full_sync(
    world: World, node: NodeName, observations: Iterable[Observation], listed_at: float,
    keep: Collection[VmUuid] = frozenset(),
) -> list[Observation]:
    """A node's listing plus an "absent" observation (at `listed_at`) for every VM of that
    node it does not list, but those in `keep`: VMs the node listed with a value the daemon
    could not keep (vmd.bus `FullSync.kept`), still there, so their last record stays."""
    listed = list(observations)
    seen = {o.uuid for o in listed}
    absent = sorted(world.vms.on_node(node) - seen - set(keep))
    return listed + [Observation(uuid, node, None, listed_at) for uuid in absent]


def full_sync(
    world: World, node: NodeName, observations: Iterable[Observation], listed_at: float,
    now: float, keep: Collection[VmUuid] = frozenset(),
) -> list[Decision]:
    """Apply a node's whole listing with the rules above (cause `sync`); `keep` as in
    `expand_full_sync`."""
    return [
        observe(world, o, now, cause=Cause.SYNC)
        for o in expand_full_sync(world, node, observations, listed_at, keep)
    ]
