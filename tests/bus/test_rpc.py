"""protocol.md §2-3 through the bus: request -> handler -> reply over Direct Reply-to."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aio_pika
import pytest
from support.bus import send_reply

from vmd.bus import (
    Bus,
    BusClient,
    Delivery,
    PublishRefused,
    RpcTimeout,
    Unroutable,
    decode_object,
)
from vmd.bus.topology import COMMANDS_EXCHANGE, COMMANDS_QUEUE, PUBLIC
from vmd.model import Reply, Request

MakeBus = Callable[..., Awaitable[Bus]]
MakeClient = Callable[..., Awaitable[BusClient]]


class FakeDaemon:
    """Answers every request with 200 and what it saw; acks after the reply (habit 5)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.seen: list[Delivery] = []

    async def handle(self, delivery: Delivery) -> None:
        self.seen.append(delivery)
        request = decode_object(delivery.body)
        assert delivery.reply_to is not None
        body = {"status": "SUCCESS", "result": {"path": request["path"], "user": delivery.user_id}}
        await send_reply(self.bus, delivery.reply_to, delivery.correlation_id, Reply(200, body))
        await delivery.ack()


async def _daemon(make_bus: MakeBus) -> FakeDaemon:
    bus = await make_bus()
    daemon = FakeDaemon(bus)
    await bus.consume(COMMANDS_QUEUE, daemon.handle)
    return daemon


async def test_call_round_trip(make_bus: MakeBus, make_client: MakeClient) -> None:
    daemon = await _daemon(make_bus)
    client = await make_client("alice")
    reply = await client.call(Request("GET", "/vm/status"), message_id="m-1", timeout=5)
    assert reply == Reply(
        200, {"status": "SUCCESS", "result": {"path": "/vm/status", "user": "alice"}}
    )
    [seen] = daemon.seen
    assert seen.user_id == "alice"
    assert seen.message_id == "m-1"
    assert seen.correlation_id
    assert seen.reply_to is not None and seen.reply_to.startswith("amq.rabbitmq.reply-to")
    assert seen.content_type == "application/json"
    assert seen.header("stream") is None
    assert not seen.redelivered


async def test_reply_properties_seen_by_a_plain_client(
    make_bus: MakeBus, amqp_url_for: Callable[[str], str]
) -> None:
    """What the acceptance suite sees: correlation_id, content_type, integer header `code`."""
    await _daemon(make_bus)
    connection = await aio_pika.connect(amqp_url_for("bob"))
    async with connection:
        channel = await connection.channel()
        replies: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        reply_queue = await channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
        await reply_queue.consume(replies.put, no_ack=True)
        exchange = await channel.get_exchange(COMMANDS_EXCHANGE)
        await exchange.publish(
            aio_pika.Message(
                b'{"method": "GET", "path": "/vm/x/status"}',
                reply_to="amq.rabbitmq.reply-to",
                correlation_id="c-42",
                user_id="bob",
                content_type="application/json",
            ),
            "command",
        )
        reply = await asyncio.wait_for(replies.get(), 5)
    assert reply.correlation_id == "c-42"
    assert reply.content_type == "application/json"
    assert reply.headers["code"] == 200
    assert type(reply.headers["code"]) is int
    assert decode_object(reply.body)["code"] == 200


async def test_stream_mode_gets_two_replies(make_bus: MakeBus, make_client: MakeClient) -> None:
    bus = await make_bus()
    final_sent = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        assert delivery.header("stream") is True and delivery.reply_to
        pending = Reply(201, {"status": "PENDING", "result": None, "task_id": "0-t"})
        await send_reply(bus, delivery.reply_to, delivery.correlation_id, pending)
        await delivery.ack()
        # The final reply goes out later, from what was kept of the request.
        reply_to, correlation_id = delivery.reply_to, delivery.correlation_id

        async def later() -> None:
            await asyncio.sleep(0.05)
            done = Reply(200, {"status": "SUCCESS", "result": {"returncode": 0}, "task_id": "0-t"})
            await send_reply(bus, reply_to, correlation_id, done)
            final_sent.set()

        asyncio.get_running_loop().create_task(later())

    await bus.consume(COMMANDS_QUEUE, handle)
    client = await make_client("alice")
    replies = [r async for r in client.stream(Request("PUT", "/vm/a/status/start"), timeout=5)]
    assert [r.code for r in replies] == [201, 200]
    assert replies[0].body["task_id"] == replies[1].body["task_id"] == "0-t"
    await asyncio.wait_for(final_sent.wait(), 5)


async def test_stream_ends_after_a_final_first_reply(
    make_bus: MakeBus, make_client: MakeClient
) -> None:
    bus = await make_bus()

    async def handle(delivery: Delivery) -> None:
        assert delivery.reply_to
        await send_reply(bus, delivery.reply_to, delivery.correlation_id,
                         Reply(404, {"detail": "x"}))
        await delivery.ack()

    await bus.consume(COMMANDS_QUEUE, handle)
    client = await make_client("alice")
    replies = [r async for r in client.stream(Request("PUT", "/vm/a/status/start"), timeout=5)]
    assert replies == [Reply(404, {"detail": "x"})]


async def test_forged_user_id_is_refused_by_the_broker(
    make_bus: MakeBus, make_client: MakeClient
) -> None:
    daemon = await _daemon(make_bus)
    client = await make_client("alice")
    with pytest.raises(PublishRefused, match="user_id property set to 'bob'"):
        await client.call(Request("GET", "/vm/status"), user_id="bob", timeout=5)
    # The client reconnected on its own and works again, as alice.
    reply = await client.call(Request("GET", "/vm/status"), timeout=5)
    assert reply.body["result"]["user"] == "alice"
    assert [d.user_id for d in daemon.seen] == ["alice"]
    assert client.reconnects == 1


async def test_impersonator_may_publish_for_another_user(
    make_bus: MakeBus, make_client: MakeClient
) -> None:
    daemon = await _daemon(make_bus)
    gateway = await make_client("vmd-api")
    reply = await gateway.call(Request("GET", "/vm/status"), user_id="alice", timeout=5)
    assert reply.body["result"]["user"] == "alice"
    assert daemon.seen[0].user_id == "alice"


async def test_no_queue_bound_is_a_clear_error(
    make_client: MakeClient, amqp_channel: aio_pika.abc.AbstractChannel
) -> None:
    await amqp_channel.declare_exchange(COMMANDS_EXCHANGE, "direct", durable=True)
    client = await make_client("alice")
    with pytest.raises(Unroutable, match=r"no queue is bound to exchange 'vmd\.commands'"):
        await client.call(Request("GET", "/vm/status"), timeout=5)


async def test_no_exchange_is_a_clear_error(make_client: MakeClient) -> None:
    client = await make_client("alice")
    with pytest.raises(PublishRefused, match=r"no exchange 'vmd\.commands'"):
        await client.call(Request("GET", "/vm/status"), timeout=5)


async def test_no_answer_times_out(make_bus: MakeBus, make_client: MakeClient) -> None:
    await make_bus(topology=PUBLIC)  # the queue exists, nobody consumes it
    client = await make_client("alice")
    with pytest.raises(RpcTimeout, match=r"no reply from vmd within 0.3s"):
        await client.call(Request("GET", "/vm/status"), timeout=0.3)


async def test_concurrent_calls_get_their_own_answers(
    make_bus: MakeBus, make_client: MakeClient
) -> None:
    await _daemon(make_bus)
    client = await make_client("alice")
    paths = [f"/vm/vm{i}/status" for i in range(50)]
    replies = await asyncio.gather(
        *(client.call(Request("GET", path), timeout=10) for path in paths)
    )
    assert [r.body["result"]["path"] for r in replies] == paths
