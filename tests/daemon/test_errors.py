"""protocol.md §3 on the real broker: the `user_id` the broker validated (none, or a user
`[auth]` does not know: 403), and the requests vmd cannot answer (no `reply_to`):
dead-lettered to the real `vmd.dead` or executed silently, and a 503 requeued for the next
instance. The rest of the error table (malformed bodies, routing errors) is behaviour,
tested without the broker in tests/daemon/fast/test_errors.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aio_pika
from support.amqp import message_count_settles

from vmd.bus.topology import COMMANDS_QUEUE, DEAD_QUEUE
from vmd.model import Reply, Request

from .conftest import Cloud, StartDaemon
from .harness import RawRequester, eventually

GOOD = {"method": "GET", "path": "/vm/status"}


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
