"""The pure core: VM statuses, the transition table and the decision procedure of docs/fsm.md.

No I/O, no await. The daemon calls (module map and rules in docs/fsm.md):

- `route(method, path)` → `Route` or the 404/405 `Reply` (at intake, before the decision);
- `decide(world, principal, request, now, routed=None)` → `Decision` for any request;
- `complete_task(world, task_id, outcome, now)`, `expire_task(world, task_id, now)`;
- `observe(world, observation, now, cause=...)`, `expand_full_sync(...)`, `full_sync(...)`;
- `start_resync(world, vm_uuid, now)` for the re-syncs a decision asks for;
- `vmd.fsm.nodes.NodeHealth` for node liveness (heartbeats, silence, maintenance);
- `task_status(task, principal)` for a task the daemon fetched from its store;
- `task_id_factory(shard)`, and the renderers of `vmd.fsm.render` for events.

Every function updates the in-memory `World` in place and returns a `Decision` listing what
the I/O edge must persist, publish and send.
"""

from vmd.fsm.completion import complete_task, expire_task, start_resync
from vmd.fsm.decision import Decision, Ignored, StatusChange
from vmd.fsm.history import HistoryEntry, HistoryQuery, entry_of, history_reply
from vmd.fsm.lookup import find_vm
from vmd.fsm.machine import MACHINE
from vmd.fsm.observe import expand_full_sync, full_sync, map_node_state, observe
from vmd.fsm.render import (
    iso_time,
    status_event,
    status_routing_key,
    task_event,
    task_routing_key,
    vm_status_object,
)
from vmd.fsm.replies import task_reply
from vmd.fsm.requests import decide, task_status
from vmd.fsm.routing import Kind, Route, route
from vmd.fsm.taskid import is_task_id, task_id_factory
from vmd.fsm.world import FsmSettings, TaskBook, VmIndex, World, holds

__all__ = [
    "MACHINE",
    "Decision",
    "FsmSettings",
    "HistoryEntry",
    "HistoryQuery",
    "Ignored",
    "Kind",
    "Route",
    "StatusChange",
    "TaskBook",
    "VmIndex",
    "World",
    "complete_task",
    "decide",
    "entry_of",
    "expand_full_sync",
    "expire_task",
    "find_vm",
    "full_sync",
    "history_reply",
    "holds",
    "is_task_id",
    "iso_time",
    "map_node_state",
    "observe",
    "route",
    "start_resync",
    "status_event",
    "status_routing_key",
    "task_event",
    "task_id_factory",
    "task_reply",
    "task_routing_key",
    "task_status",
    "vm_status_object",
]
