"""protocol.md §2-§3: paths, trailing slashes, 404 `Not found`, 405 `Method "X" not allowed.`."""

from __future__ import annotations

import pytest

from vmd.fsm import Kind, Route, replies, route
from vmd.model import Reply

from .helpers import ADMIN, HOST, UUID, make_vm, make_world, req

V = "web01.example.com"


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        pytest.param("GET", "/vm/status", Route(Kind.LIST), id="list"),
        pytest.param("GET", "/vm/status/", Route(Kind.LIST), id="list-slash"),
        pytest.param("get", "/vm/status", Route(Kind.LIST), id="lowercase-method"),
        pytest.param("GET", f"/vm/{V}/status", Route(Kind.STATUS, V), id="status"),
        pytest.param("GET", f"/vm/{V}/status/", Route(Kind.STATUS, V), id="status-slash"),
        pytest.param("PUT", f"/vm/{V}/status", Route(Kind.ACTION, V, ""), id="put-no-action"),
        pytest.param("GET", f"/vm/{V}/status/current", Route(Kind.CURRENT_GET, V, "current"),
                     id="current-get"),
        pytest.param("PUT", f"/vm/{V}/status/current/", Route(Kind.CURRENT_PUT, V, "current"),
                     id="current-put-slash"),
        pytest.param("PUT", f"/vm/{UUID}/status/start", Route(Kind.ACTION, UUID, "start"),
                     id="start-by-uuid"),
        pytest.param("PUT", f"/vm/{V}/status/stop/", Route(Kind.ACTION, V, "stop"),
                     id="stop-slash"),
        pytest.param("PUT", f"/vm/{V}/status/reboot", Route(Kind.ACTION, V, "reboot"),
                     id="reboot"),
        pytest.param("PUT", f"/vm/{V}/status/bogus", Route(Kind.ACTION, V, "bogus"),
                     id="put-unknown-action-reaches-417"),
        pytest.param("GET", f"/vm/{V}/status/start", Route(Kind.STATUS, V, "start"),
                     id="get-start-is-status"),
        pytest.param("GET", f"/vm/{V}/status/bogus", Route(Kind.STATUS, V, "bogus"),
                     id="get-any-action-is-status"),
        pytest.param("PUT", f"/vm/{V}/define", Route(Kind.DEFINE, V), id="define"),
        pytest.param("PUT", f"/vm/{V}/define/", Route(Kind.DEFINE, V), id="define-slash"),
        pytest.param("GET", "/task/0-a2327793-2600-423d-9f07/status",
                     Route(Kind.TASK, task_id="0-a2327793-2600-423d-9f07"), id="task"),
        pytest.param("GET", "/task/x/status/", Route(Kind.TASK, task_id="x"), id="task-slash"),
        pytest.param("GET", "/vm/a_b-c.d/status", Route(Kind.STATUS, "a_b-c.d"),
                     id="vm-charset"),
    ],
)
def test_routes(method: str, path: str, expected: Route) -> None:
    assert route(method, path) == expected


NOT_FOUND = [
    "", "vm/status", "/", "/vm", "/vm/", "/vm/status//", "/vm//status", "/vm/x/status//",
    "/vm/x y/status", "/vm/x%20y/status", "/vm/é/status", "/vm/x/statuses", "/vm/x/status/a/b",
    "/vm/x/status/a b", "/vm/x/define/more", "/vm/x", "/task/x", "/task/x/status/more",
    "/task//status", "/tasks/x/status", "/VM/status", "/vm/status/x/y/z", "//vm/status",
    "/vm/x/status/sta rt",
]


@pytest.mark.parametrize("path", [pytest.param(p, id=p or "empty") for p in NOT_FOUND])
def test_unknown_path_is_404(path: str) -> None:
    assert route("GET", path) == Reply(404, {"detail": "Not found"})
    assert route("PUT", path) == Reply(404, {"detail": replies.NOT_FOUND})


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("PUT", "/vm/status", id="put-list"),
        pytest.param("POST", "/vm/status/", id="post-list"),
        pytest.param("DELETE", f"/vm/{V}/status", id="delete-status"),
        pytest.param("POST", f"/vm/{V}/status/start", id="post-start"),
        pytest.param("delete", f"/vm/{V}/status/current", id="delete-current-lower"),
        pytest.param("GET", f"/vm/{V}/define", id="get-define"),
        pytest.param("POST", f"/vm/{V}/define/", id="post-define"),
        pytest.param("PUT", "/task/x/status", id="put-task"),
        pytest.param("OPTIONS", "/task/x/status/", id="options-task"),
    ],
)
def test_wrong_method_is_405(method: str, path: str) -> None:
    assert route(method, path) == Reply(405, {"detail": f'Method "{method.upper()}" not allowed.'})


def test_decide_answers_routing_errors() -> None:
    world = make_world(make_vm())
    d = req(world, ADMIN, "PATCH", f"/vm/{HOST}/status/stop")
    assert d.reply == Reply(405, {"detail": 'Method "PATCH" not allowed.'})
    d = req(world, ADMIN, "GET", "/nothing")
    assert d.reply == Reply(404, {"detail": "Not found"}) and not d.changes


def test_get_status_action_reads_status_without_acting() -> None:
    vm = make_vm()
    world = make_world(vm)
    d = req(world, ADMIN, "GET", f"/vm/{HOST}/status/start")
    assert d.reply is not None and d.reply.code == 200
    assert d.reply.body["result"]["status"] == "stopped" and d.new_task is None
    assert vm.seq == 0
