"""protocol.md §3's error table on the daemon's parts (tests/daemon/test_errors.py's
behaviour, without the broker): malformed requests are 400, routing errors 404/405, no or
an unknown `user_id` 403; what cannot be answered (no `reply_to`) is dead-lettered or
executed silently; a `reply_to` the asker may not read is dead-lettered, each counted and
logged once per sender; while draining a request is answered 503 and held for the next
instance."""

from __future__ import annotations

import json

import pytest
from support.fastdaemon import FastDaemon

from vmd.model import Reply

GOOD = {"method": "GET", "path": "/vm/status"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"{not json", "body is not JSON", id="not-json"),
        pytest.param(b"[1, 2]", "body is not a JSON object", id="not-an-object"),
        pytest.param(b"\xff\xfe", "body is not UTF-8", id="not-utf8"),
        pytest.param(json.dumps({"path": "/vm/status"}).encode(), "missing 'method'",
                     id="no-method"),
        pytest.param(json.dumps({"method": "GET"}).encode(), "missing 'path'", id="no-path"),
        pytest.param(json.dumps({"method": 1, "path": "/vm/status"}).encode(),
                     "'method' must be a non-empty string", id="method-not-a-string"),
        pytest.param(json.dumps({**GOOD, "data": [1]}).encode(), "'data' must be an object",
                     id="data-not-an-object"),
        pytest.param(json.dumps({**GOOD, "data": {"x": "a" * 70_000}}).encode(),
                     "over the 65536-byte limit", id="over-64KiB"),
    ],
)
async def test_malformed_is_400(fast: FastDaemon, body: bytes, reason: str) -> None:
    request = await fast.send(fast.bus.request("alice", "", "", body=body))
    (reply,) = fast.bus.replies(request.correlation_id or "")
    assert reply.code == 400
    assert list(reply.body) == ["detail"]
    assert reply.body["detail"].startswith("Malformed request: ")
    assert reason in reply.body["detail"]
    assert fast.bus.settled(request).how == "ack"


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        pytest.param("GET", "/nope", Reply(404, {"detail": "Not found"}), id="unknown-path"),
        pytest.param("GET", "/vm/web01.example.com/status/start/x",
                     Reply(404, {"detail": "Not found"}), id="too-deep"),
        pytest.param("DELETE", "/vm/status",
                     Reply(405, {"detail": 'Method "DELETE" not allowed.'}), id="405"),
        pytest.param("POST", "/task/0-a2327793-2600-423d-9f07/status",
                     Reply(405, {"detail": 'Method "POST" not allowed.'}), id="405-task"),
    ],
)
async def test_routing_errors(fast: FastDaemon, method: str, path: str, expected: Reply) -> None:
    assert await fast.call("admin", method, path) == expected


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        pytest.param(None, Reply(403, {"detail": "Authentication credentials were not "
                                                 "provided."}), id="no-user-id"),
        pytest.param("vmd", Reply(403, {"detail": "You do not have permission to perform "
                                                  "this action."}), id="unknown-principal"),
    ],
)
async def test_who_asks_403(fast: FastDaemon, user: str | None, expected: Reply) -> None:
    assert await fast.call(user, "GET", "/vm/status") == expected


async def test_unparsable_without_reply_to_is_dead_lettered(fast: FastDaemon) -> None:
    request = await fast.send(fast.bus.request("alice", "", "", body=b"{oops", reply_to=None,
                                               message_id="dead-1"))
    settled = fast.bus.settled(request)
    assert settled.how == "dead"
    assert (settled.reason or "").startswith("Malformed request: body is not JSON")
    assert fast.bus.settled(request).delivery.message_id == "dead-1"
    assert fast.metrics.dead_lettered._value.get() == 1


async def test_parsable_without_reply_to_is_executed_and_acked(fast: FastDaemon) -> None:
    fast.bus.take()
    pending = {"ram": 2048}
    request = await fast.send(fast.bus.request("admin", "PUT", "/vm/web02.example.com/define",
                                               pending, reply_to=None))
    assert fast.vm("web02.example.com").pending_definition == pending
    assert fast.bus.settled(request).how == "ack"
    assert [m for m in fast.bus.published if m.exchange == ""] == []  # no reply
    assert fast.bus.dead == []


@pytest.mark.parametrize(
    "reply_to",
    [pytest.param("bob.replies", id="another-users-queue"),
     pytest.param("vmd.commands", id="a-vmd-queue")],
)
async def test_a_reply_to_the_asker_may_not_read_is_dead_lettered(
        fast: FastDaemon, reply_to: str) -> None:
    fast.bus.take()
    request = await fast.send(fast.bus.request(
        "alice", "PUT", "/vm/web01.example.com/status/stop", reply_to=reply_to))
    assert fast.bus.settled(request).how == "dead"
    assert fast.bus.settled(request).reason == "reply_to not allowed"
    assert fast.bus.published == [] and fast.tasks() == []  # not executed


async def test_shutting_down_is_503_and_held_for_the_next_instance(fast: FastDaemon) -> None:
    fast.core.draining = True  # what the runner's shutdown step 1 sets
    request = await fast.send(fast.bus.request(
        "alice", "GET", "/vm/web01.example.com/status", message_id="m-503"))
    assert fast.bus.replies(request.correlation_id or "") == [
        Reply(503, {"detail": "Service unavailable"})]
    assert fast.bus.settled(request).how is None  # not acked: requeued by the runner
    assert fast.pipeline.held == [request]
    # A report too is held, not applied.
    fast.bus.take()
    await fast.observe("node1", fast.fleet["web01.example.com"], "stopped")
    assert fast.vm("web01.example.com").status.value == "running"
    assert fast.pipeline.held[-1].queue == "vmd.agent.reports"


async def test_dead_lettered_requests_are_counted_each_and_logged_once_per_sender(
        fast: FastDaemon) -> None:
    n = 40
    for i in range(n):
        await fast.on_command(fast.bus.request("alice", "GET", "/vm/status",
                                               correlation_id=f"c{i}", reply_to="bob.inbox"))
    await fast.idle()
    assert len(fast.bus.dead) == n
    assert fast.metrics.dead_lettered._value.get() == n
    logs = fast.intake._dead_letter_logs
    assert set(logs._logged) == {"alice"}  # logged once ...
    assert logs._quiet == {"alice": n - 1}  # ... the rest counted for the next line
