"""(method, path) → what the request asks for, or the 404/405 reply (protocol.md §2-§3).

Routing is separate from the decision so the daemon can route at intake (to classify and
count a request) without deciding yet, and so 404/405 never depend on a VM's state.

Paths (one trailing `/` accepted; `<vm>` and every segment match `[A-Za-z0-9._-]+`):

| path                         | methods  | route kind                                   |
|------------------------------|----------|----------------------------------------------|
| `/vm/status`                 | GET      | LIST                                         |
| `/vm/<vm>/status`            | GET, PUT | GET: STATUS; PUT: ACTION with action ""      |
| `/vm/<vm>/status/current`    | GET, PUT | CURRENT_GET, CURRENT_PUT                     |
| `/vm/<vm>/status/history`    | GET      | HISTORY (vmd extension; PUT: ACTION, 417)    |
| `/vm/<vm>/status/<action>`   | GET, PUT | GET: STATUS (upstream quirk); PUT: ACTION    |
| `/vm/<vm>/define`            | PUT      | DEFINE                                       |
| `/task/<task_id>/status`     | GET      | TASK                                         |

`PUT /vm/<vm>/status[/<anything>]` is routed so that it reaches the 404/423 checks and then
step 4 of docs/fsm.md §3.5 (417 `Bad action`). Methods are compared upper-cased.
"""

from __future__ import annotations

import enum
import re
from typing import NamedTuple

from vmd.fsm import replies
from vmd.model import Reply


class Kind(enum.Enum):
    LIST = "list"
    STATUS = "status"
    CURRENT_GET = "current_get"
    CURRENT_PUT = "current_put"
    ACTION = "action"
    DEFINE = "define"
    TASK = "task"
    HISTORY = "history"


class Route(NamedTuple):
    """A routed request: its kind and the path's VM / action / task id ("" when absent)."""

    kind: Kind
    vm: str = ""
    action: str = ""
    task_id: str = ""


_SEGMENT = re.compile(r"[A-Za-z0-9._-]+").fullmatch
_VM_STATUS = re.compile(r"/vm/([A-Za-z0-9._-]+)/status(?:/([A-Za-z0-9._-]+))?/?").fullmatch
_NOT_FOUND = replies.error(404, replies.NOT_FOUND)
_LIST = Route(Kind.LIST)
_GET = "GET"
_PUT = "PUT"


def _not_allowed(method: str) -> Reply:
    return replies.error(405, replies.method_not_allowed(method))


def route(method: str, path: str) -> Route | Reply:
    """The route of a request, or its 404 `Not found` / 405 `Method "X" not allowed.` reply."""
    m = _VM_STATUS(path)
    if m is not None:  # the hot path: one regex for /vm/<vm>/status[/<action>][/]
        vm, action = m.groups("")
        return _status_route(method.upper(), vm, action)
    return _route(method, path)


def _status_route(method: str, vm: str, action: str) -> Route | Reply:
    """`/vm/<vm>/status[/<action>]` by its (upper-cased) method."""
    if method == _GET:
        if action == "history":
            return Route(Kind.HISTORY, vm, action)
        return Route(Kind.CURRENT_GET if action == "current" else Kind.STATUS, vm, action)
    if method == _PUT:
        return Route(Kind.CURRENT_PUT if action == "current" else Kind.ACTION, vm, action)
    return _not_allowed(method)


def _route(method: str, path: str) -> Route | Reply:
    """Every path the hot path's regex does not match, split at its `/`s."""
    if not path.startswith("/"):
        return _NOT_FOUND
    end = len(path) - 1 if path.endswith("/") and len(path) > 1 else len(path)
    parts = path[1:end].split("/")
    method = method.upper()
    head = parts[0]
    if head == "vm":
        return _vm_route(method, parts)
    if head == "task" and len(parts) == 3 and parts[2] == "status" and _SEGMENT(parts[1]):
        return Route(Kind.TASK, task_id=parts[1]) if method == _GET else _not_allowed(method)
    return _NOT_FOUND


def _vm_route(method: str, parts: list[str]) -> Route | Reply:
    """`/vm/...`: the list, a VM's define, a VM's status paths."""
    n = len(parts)
    if n == 2:
        if parts[1] != "status":
            return _NOT_FOUND
        return _LIST if method == _GET else _not_allowed(method)
    if n < 3 or n > 4 or not _SEGMENT(parts[1]):
        return _NOT_FOUND
    vm, what = parts[1], parts[2]
    if what == "define" and n == 3:
        return Route(Kind.DEFINE, vm) if method == _PUT else _not_allowed(method)
    if what != "status":
        return _NOT_FOUND
    action = parts[3] if n == 4 else ""
    if n == 4 and not _SEGMENT(action):
        return _NOT_FOUND
    return _status_route(method, vm, action)
