"""The daemon's pure helpers, table-tested: request parsing, header and kind mapping,
principals, the deadline heap and the redelivery memo."""

from __future__ import annotations

import json

import pytest

from vmd.config import AuthSettings
from vmd.daemon.auth import Principals
from vmd.daemon.deadlines import Deadlines
from vmd.daemon.memo import MEMO_SIZE, Memo
from vmd.daemon.requests import parse_request, request_kind, wants_stream
from vmd.fsm import route
from vmd.model import Action, Principal, Reply, Request, Task, TaskId, VmUuid


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"method": "GET", "path": "/vm/status"}, Request("GET", "/vm/status", {}),
                     id="no-data"),
        pytest.param({"method": "PUT", "path": "/x", "data": None}, Request("PUT", "/x", {}),
                     id="null-data"),
        pytest.param({"method": "PUT", "path": "/x", "data": {"a": 1}},
                     Request("PUT", "/x", {"a": 1}), id="data"),
        pytest.param({"method": "", "path": "/x"}, "'method' must be a non-empty string",
                     id="empty-method"),
        pytest.param({"method": "GET", "path": 3}, "'path' must be a non-empty string",
                     id="path-not-a-string"),
        pytest.param({"method": "GET", "path": "/x", "data": "a"}, "'data' must be an object",
                     id="data-string"),
        pytest.param({"path": "/x"}, "missing 'method'", id="no-method"),
        pytest.param({"method": "GET"}, "missing 'path'", id="no-path"),
    ],
)
def test_parse_request(body: dict[str, object], expected: Request | str) -> None:
    assert parse_request(json.dumps(body).encode()) == expected


def test_parse_request_checks_size_before_parsing() -> None:
    reason = parse_request(b" " * (64 * 1024 + 1))
    assert isinstance(reason, str) and "over the 65536-byte limit" in reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(True, True, id="true"), pytest.param(False, False, id="false"),
        pytest.param("TRUE", True, id="string-true"), pytest.param(b"1", True, id="bytes-1"),
        pytest.param(1, True, id="int-1"), pytest.param(0, False, id="int-0"),
        pytest.param(None, False, id="absent"), pytest.param("yes", False, id="yes"),
    ],
)
def test_wants_stream(value: object, expected: bool) -> None:
    assert wants_stream(value) is expected


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        pytest.param("GET", "/vm/status", "list", id="list"),
        pytest.param("GET", "/vm/a/status", "get", id="get"),
        pytest.param("PUT", "/vm/a/status/current", "current", id="current"),
        pytest.param("PUT", "/vm/a/status/stop", "stop", id="stop"),
        pytest.param("PUT", "/vm/a/status/explode", "other", id="bad-action"),
        pytest.param("PUT", "/vm/a/define", "define", id="define"),
        pytest.param("GET", "/task/0-a2327793-2600-423d-9f07/status", "task", id="task"),
        pytest.param("GET", "/nope", "other", id="404"),
    ],
)
def test_request_kind(method: str, path: str, kind: str) -> None:
    assert request_kind(route(method, path)) == kind


def test_principals() -> None:
    p = Principals(AuthSettings(admins=frozenset({"admin", "alice"}),
                                owners={"alice": frozenset({"o1"}), "bob": frozenset({"o2"})}))
    assert p.get("admin") == Principal("admin", admin=True)
    assert p.get("alice") == Principal("alice", admin=True, owner_uuids=frozenset({"o1"}))
    assert p.get("bob") == Principal("bob", owner_uuids=frozenset({"o2"}))
    assert p.get("vmd") is None


def _task(task_id: str, deadline: float) -> Task:
    return Task(TaskId(task_id), VmUuid("u"), Action.START, "PUT", {}, 0.0, deadline)


def test_deadlines_come_due_in_order() -> None:
    d = Deadlines()
    for task_id, deadline in (("b", 20.0), ("a", 10.0), ("c", 30.0)):
        d.push(_task(task_id, deadline))
    assert d.next() == 10.0
    assert d.due(9.9) == []
    assert d.due(20.0) == ["a", "b"]
    assert (len(d), d.next()) == (1, 30.0)


def test_memo_forgets_the_oldest() -> None:
    memo = Memo()
    for i in range(MEMO_SIZE + 1):
        memo.put(("u", str(i), b""), Reply(200, {"n": i}))
    assert memo.get(("u", "0", b"")) is None
    assert memo.get(("u", str(MEMO_SIZE), b"")) == Reply(200, {"n": MEMO_SIZE})
