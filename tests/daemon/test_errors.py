"""protocol.md §3: every row of the error table, answered on the wire with its exact body,
and the requests vmd cannot answer (no `reply_to`): dead-lettered or executed silently."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aio_pika
import pytest
from support.amqp import message_count_settles

from vmd.bus.topology import COMMANDS_QUEUE, DEAD_QUEUE
from vmd.model import Reply, Request

from .conftest import Cloud, StartDaemon
from .harness import RawRequester, eventually

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
async def test_malformed_is_400(cloud: Cloud, raw: Callable[..., Any], body: bytes,
                                reason: str) -> None:
    requester: RawRequester = await raw("alice")
    cid = await requester.send(body)
    (reply,) = await requester.replies_for(cid)
    assert reply.code == 400
    assert list(reply.body) == ["detail"]
    assert reply.body["detail"].startswith("Malformed request: ")
    assert reason in reply.body["detail"]


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        pytest.param({"method": "GET", "path": "/nope"}, Reply(404, {"detail": "Not found"}),
                     id="unknown-path"),
        pytest.param({"method": "GET", "path": "/vm/web01.example.com/status/start/x"},
                     Reply(404, {"detail": "Not found"}), id="too-deep"),
        pytest.param({"method": "DELETE", "path": "/vm/status"},
                     Reply(405, {"detail": 'Method "DELETE" not allowed.'}), id="405"),
        pytest.param({"method": "POST", "path": "/task/0-a2327793-2600-423d-9f07/status"},
                     Reply(405, {"detail": 'Method "POST" not allowed.'}), id="405-task"),
    ],
)
async def test_routing_errors(cloud: Cloud, request_: dict[str, str], expected: Reply) -> None:
    reply = await cloud.call("admin", request_["method"], request_["path"])
    assert reply == expected


async def test_no_user_id_is_403(cloud: Cloud, raw: Callable[..., Any]) -> None:
    requester: RawRequester = await raw("alice")
    cid = await requester.send(GOOD, user_id=None)
    (reply,) = await requester.replies_for(cid)
    assert reply == Reply(403, {"detail": "Authentication credentials were not provided."})


async def test_unknown_principal_is_403(cloud: Cloud, make_client: Callable[..., Any]) -> None:
    # A broker user [auth] does not list: the daemon's own, over Direct Reply-to (it may
    # declare no reply queue of its own, and vmd never answers into a `vmd.*` queue).
    client = await make_client("vmd")
    reply = await client.call(Request("GET", "/vm/status"), timeout=10)
    assert reply == Reply(403, {"detail": "You do not have permission to perform this action."})


async def test_unparsable_without_reply_to_is_dead_lettered(
    cloud: Cloud, raw: Callable[..., Any], amqp_channel: aio_pika.abc.AbstractChannel,
) -> None:
    requester: RawRequester = await raw("alice")
    await requester.send(b"{oops", reply=False, message_id="dead-1")
    queue = await amqp_channel.get_queue(DEAD_QUEUE)
    assert await message_count_settles(amqp_channel, DEAD_QUEUE, 1) == 1
    got = await queue.get(no_ack=True)
    assert got is not None
    assert got.body == b"{oops"
    assert got.message_id == "dead-1"
    assert str(got.headers["x-vmd-error"]).startswith("Malformed request: body is not JSON")
    assert got.headers["x-vmd-user-id"] == "alice"
    assert await message_count_settles(amqp_channel, COMMANDS_QUEUE, 0) == 0
    assert cloud.daemon.metrics.dead_lettered._value.get() == 1


async def test_parsable_without_reply_to_is_executed_and_acked(
    cloud: Cloud, raw: Callable[..., Any], amqp_channel: aio_pika.abc.AbstractChannel,
) -> None:
    requester: RawRequester = await raw("admin")
    pending = {"ram": 2048}
    await requester.send({"method": "PUT", "path": "/vm/web02.example.com/define",
                          "data": pending}, reply=False)
    vm = cloud.vm("web02.example.com")
    await eventually(lambda: vm.pending_definition == pending, what="the definition staged")
    assert await message_count_settles(amqp_channel, COMMANDS_QUEUE, 0) == 0
    assert requester.replies == {}
    assert await message_count_settles(amqp_channel, DEAD_QUEUE, 0) == 0


async def test_shutting_down_is_503_and_requeued_for_the_next_instance(
    cloud: Cloud, raw: Callable[..., Any], amqp_channel: aio_pika.abc.AbstractChannel,
    start_daemon: StartDaemon,
) -> None:
    requester: RawRequester = await raw("alice")
    cloud.daemon.core.draining = True  # what the runner's shutdown step 1 sets
    cid = await requester.send({"method": "GET", "path": "/vm/web01.example.com/status"},
                               message_id="m-503")
    (first,) = await requester.replies_for(cid)
    assert first == Reply(503, {"detail": "Service unavailable"})
    await cloud.daemon.shutdown()
    # Not acked: back in the queue, untouched, for another instance.
    assert await message_count_settles(amqp_channel, COMMANDS_QUEUE, 1) == 1
    await start_daemon()
    replies = await requester.replies_for(cid, 2)
    assert replies[1].code == 200
    assert replies[1].body["result"]["hostname"] == "web01.example.com"
