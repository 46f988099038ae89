"""The entry point for requests: `decide()`, plus the read-only answers and `define`.

`decide()` routes a request (unless the caller already did) and hands it to the procedure
for its route: the list (§3.1), a VM's stored status (§3.2), the power requests
(vmd.fsm.power), staging a definition (§6) and a task's state (§7).

The `task_id` of a synchronous answer (list, status, define, a 400 FAILURE, an instant
freeze) is a fresh id that names no task, as upstream's "dummy" ids (asking for it
answers 404).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vmd.fsm import replies
from vmd.fsm.decision import Decision
from vmd.fsm.definitions import disk_resize
from vmd.fsm.history import get_history
from vmd.fsm.listing import StatusList, open_list
from vmd.fsm.lookup import resolve_vm
from vmd.fsm.power import get_current, put_action, put_current
from vmd.fsm.render import vm_status_object
from vmd.fsm.routing import Kind, Route, route
from vmd.fsm.world import World
from vmd.model import Principal, Reply, Request, Task

_TASK_NOT_FOUND = replies.error(404, replies.TASK_NOT_FOUND)
_FORBIDDEN = replies.error(403, replies.PERMISSION_DENIED)


def list_status(world: World, principal: Principal, data: Mapping[str, Any]) -> Decision:
    """`GET /vm/status` (§3.1) in one step: admins see every VM, owners their own. (The
    daemon renders a big list in slices instead: vmd.fsm.listing.)"""
    job = open_list(world, principal, data)
    if type(job) is Reply:
        return Decision(reply=job)
    assert type(job) is StatusList
    return Decision(reply=job.reply(job.render()))


def get_status(world: World, principal: Principal, ident: str) -> Decision:
    """`GET /vm/<vm>/status` (§3.2): vmd's stored view, no node check."""
    vm = resolve_vm(world.vms, ident, principal)
    if isinstance(vm, Reply):
        return Decision(reply=vm)
    body = vm_status_object(vm, world.nodes, world.tasks.pending_of(vm.uuid))
    return Decision(reply=replies.success(body, world.new_task_id()))


def task_status(task: Task | None, principal: Principal) -> Reply:
    """`GET /task/<id>/status` (§7) for a task the caller fetched (memory or store).

    An owner asking for another owner's task learns nothing: 404 as for an unknown id.
    """
    if task is None or not principal.may_see(task.owner_uuid):
        return _TASK_NOT_FOUND
    return replies.task_reply(task)


def define(world: World, principal: Principal, ident: str, data: Mapping[str, Any]) -> Decision:
    """`PUT /vm/<vm>/define` (§6, admin): stage `data` as the VM's pending change.

    An empty `data` clears the pending change. The answer is 200 SUCCESS with
    `{"hostname", "uuid", "pending_definition", "disk_resize"}`.
    """
    vm = resolve_vm(world.vms, ident, principal)
    if isinstance(vm, Reply):
        return Decision(reply=vm)
    if not principal.admin:
        return Decision(reply=_FORBIDDEN)
    pending = dict(data) or None
    vm.pending_definition = pending
    result = {
        "hostname": vm.hostname,
        "uuid": vm.uuid,
        "pending_definition": pending,
        "disk_resize": disk_resize(pending, vm.active_definition),
    }
    return Decision(reply=replies.success(result, world.new_task_id()), vm=vm)


def decide(
    world: World, principal: Principal, request: Request, now: float,
    routed: Route | Reply | None = None, *, busy: bool = False,
    join: Callable[[Task], bool] | None = None,
) -> Decision:
    """Decide one request. `routed`: the result of `route()` if the caller already has it.

    `busy` and `join` are the daemon's limits (vmd.fsm.power `put_action`, `get_current`):
    the principal may create no more tasks now; may this request join a pending read.
    """
    r = route(request.method, request.path) if routed is None else routed
    if type(r) is Reply:
        return Decision(reply=r)
    assert type(r) is Route
    kind = r.kind
    data = request.data
    if kind is Kind.STATUS:
        return get_status(world, principal, r.vm)
    if kind is Kind.ACTION:
        return put_action(world, principal, r.vm, r.action, data, now, busy=busy)
    if kind is Kind.CURRENT_GET:
        return get_current(world, principal, r.vm, now, busy=busy, join=join)
    if kind is Kind.CURRENT_PUT:
        return put_current(world, principal, r.vm, data, now)
    if kind is Kind.TASK:
        return Decision(reply=task_status(world.tasks.get(r.task_id), principal))
    if kind is Kind.LIST:
        return list_status(world, principal, data)
    if kind is Kind.HISTORY:
        return get_history(world, principal, r.vm, data)
    return define(world, principal, r.vm, data)

