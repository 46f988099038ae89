"""JSON shapes vmd shows: VM status objects, ISO times, and the bodies of its events.

Kept apart from the decision logic so the daemon and the bus publish exactly what the
decision procedure shows in its replies (one renderer for `status_change` times).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from operator import attrgetter
from typing import Any

from vmd.fsm.decision import StatusChange
from vmd.model import (
    Action,
    JsonObject,
    Node,
    NodeName,
    NodeStatus,
    Task,
    Vm,
    VmStatus,
    VmUuid,
)

_gmtime = time.gmtime
_strftime = time.strftime
# Plain strings for the JSON bodies (an Enum's `.value` is a descriptor call).
_STATUS = {s: s.value for s in VmStatus}
_NODE_STATUS = {s: s.value for s in NodeStatus}
_ACTION = {a: a.value for a in Action}


_floor = math.floor
# "HH:MM:" for each minute of a day.
_MINUTE = tuple(f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60))


@functools.lru_cache(maxsize=4096)
def _day(days: int) -> str:
    # A list of 100k VMs spans a few hundred days at most: nearly every rendering hits this
    # cache, where a per-second cache missed for any time older than a few hours
    # (docs/performance.md: 2x faster, and `GET /vm/status` renders one per VM).
    return _strftime("%Y-%m-%dT", _gmtime(days * 86400))


def iso_time(t: float | None) -> str | None:
    """POSIX seconds as ISO-8601 UTC with millisecond precision and `Z`; None stays None.

    Milliseconds are truncated (floor), so a time never renders later than it is.
    """
    if t is None:
        return None
    seconds, millis = divmod(_floor(t * 1000), 1000)
    days, second_of_day = divmod(seconds, 86400)
    minute, second = divmod(second_of_day, 60)
    return f"{_day(days)}{_MINUTE[minute]}{second:02d}.{millis:03d}Z"


def tasks_object(tasks: Collection[Task]) -> JsonObject:
    """`tasks` of a status object: `{task_id: {"action", "method", "time"}}`."""
    if not tasks:
        return {}
    return {
        t.task_id: {"action": _ACTION[t.action], "method": t.method, "time": iso_time(t.created)}
        for t in tasks
    }


def _status_object(hostname: str, uuid: str, alias: str, status: VmStatus,
                   status_change: float | None, node_status: str | None,
                   tasks: Collection[Task]) -> JsonObject:
    # The one place that spells the keys of a status object (docs/fsm.md §3.1).
    return {
        "hostname": hostname,
        "uuid": uuid,
        "alias": alias,
        "status": _STATUS[status],
        "status_change": iso_time(status_change),
        "node_status": node_status,
        "tasks": tasks_object(tasks),
    }


def vm_status_object(
    vm: Vm, nodes: Mapping[NodeName, Node], tasks: Collection[Task]
) -> JsonObject:
    """One VM as `GET /vm/status` and `GET /vm/<vm>/status` show it (docs/fsm.md §3.1)."""
    node = nodes.get(vm.node)
    return _status_object(vm.hostname, vm.uuid, vm.alias, vm.status, vm.status_change,
                          None if node is None else _NODE_STATUS[node.status], tasks)


# What the list shows of a VM, copied at one moment (vmd.fsm.listing): hostname, uuid,
# alias, status, status_change, node. A tuple: one C call copies it (`vm_row`), and the
# default order (hostname, then uuid) is its natural order.
Row = tuple[str, VmUuid, str, VmStatus, float | None, NodeName]
vm_row: Callable[[Vm], Row] = attrgetter(
    "hostname", "uuid", "alias", "status", "status_change", "node")


def node_statuses(nodes: Mapping[NodeName, Node]) -> dict[NodeName, str]:
    """Each node's status as the status objects show it (copied for a list's snapshot)."""
    return {name: _NODE_STATUS[node.status] for name, node in nodes.items()}


def row_status_objects(
    rows: Iterable[Row],
    node_status: Mapping[NodeName, str],
    pending: Mapping[VmUuid, Collection[Task]],
) -> list[JsonObject]:
    """The status objects of snapshot rows (`vm_status_object` of each VM as copied)."""
    status_of = node_status.get
    tasks_of = pending.get
    none: tuple[Task, ...] = ()
    return [_status_object(h, u, a, s, t, status_of(n), tasks_of(u, none))
            for h, u, a, s, t, n in rows]


def status_event(c: StatusChange) -> JsonObject:
    """The body of a `vm.<owner_uuid>.<uuid>.status_change` event (protocol.md §9)."""
    vm = c.vm
    return {
        "uuid": vm.uuid,
        "hostname": vm.hostname,
        "alias": vm.alias,
        "node": vm.node,
        "owner_uuid": vm.owner_uuid,
        "status": c.status.value,
        "previous": c.previous.value,
        "status_change": iso_time(c.time),
        "seq": c.seq,
        "task_id": c.task_id,
        "cause": c.cause.value,
        "principal": c.principal,
    }


def status_routing_key(c: StatusChange) -> str:
    return f"vm.{c.vm.owner_uuid}.{c.vm.uuid}.status_change"


def task_event(task: Task, hostname: str) -> JsonObject:
    """The body of a `task.<owner_uuid>.<task_id>.done` event (protocol.md §9)."""
    result: Any = task.result
    return {
        "task_id": task.task_id,
        "uuid": task.vm_uuid,
        "hostname": hostname,
        "action": task.action.value,
        "status": task.state.value,
        "result": result,
    }


def task_routing_key(task: Task) -> str:
    return f"task.{task.owner_uuid}.{task.task_id}.done"
