"""Losing the broker: redelivery after a cut, explicit re-declare and re-consume, bounded
waits while it is away, and the first connect's retries (connections cut with a TCP proxy)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aio_pika
import pytest
from structlog.testing import capture_logs
from support.bus import send_reply
from support.proxy import TcpProxy

from vmd.bus import (
    Bus,
    BusClient,
    BusSettings,
    ConnectFailed,
    Delivery,
    NotConnected,
    Outgoing,
    decode_object,
    encode,
)
from vmd.bus.topology import COMMANDS_EXCHANGE, COMMANDS_QUEUE, DAEMON
from vmd.model import Reply, Request

MakeBus = Callable[..., Awaitable[Bus]]
Settings = Callable[..., BusSettings]


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_unacked_delivery_comes_back_redelivered_after_a_cut(
    make_bus: MakeBus,
    amqp_proxy: TcpProxy,
    amqp_vhost: str,
    amqp_channel: aio_pika.abc.AbstractChannel,
) -> None:
    """Ack after the effect: a delivery not acked when the connection dies is not lost."""
    bus = await make_bus(url=amqp_proxy.url("vmd", "vmd", amqp_vhost))
    seen: list[Delivery] = []

    async def handle(delivery: Delivery) -> None:
        seen.append(delivery)
        if delivery.redelivered:
            assert await delivery.ack()

    await bus.consume(COMMANDS_QUEUE, handle)
    await amqp_channel.default_exchange.publish(aio_pika.Message(b'{"n": 1}'), COMMANDS_QUEUE)
    await _until(lambda: len(seen) == 1)
    with capture_logs() as logs:
        assert amqp_proxy.cut() == 1
        await _until(lambda: len(seen) == 2)
    first, again = seen
    assert (first.generation, first.redelivered) == (1, False)
    assert (again.generation, again.redelivered) == (2, True)
    # The operator sees the loss and the recovery as two structured lines of the link.
    link = [(e["log_level"], e["event"], e.get("reconnects")) for e in logs
            if e.get("logger_name") == "vmd.bus.link"]
    assert link == [("warning", "connection lost; reconnecting", None),
                    ("info", "reconnected", 1)], logs
    assert again.body == first.body
    assert first.stale and not await first.ack()  # too late: a no-op, not a channel error
    assert bus.reconnects == 1
    declared = await amqp_channel.declare_queue(COMMANDS_QUEUE, passive=True)
    assert declared.declaration_result.message_count == 0


async def test_cut_mid_command_still_gives_exactly_one_answer(
    make_bus: MakeBus, amqp_proxy: TcpProxy, amqp_vhost: str, amqp_url_for: Callable[[str], str]
) -> None:
    bus = await make_bus(url=amqp_proxy.url("vmd", "vmd", amqp_vhost))
    working = asyncio.Event()
    release = asyncio.Event()
    dropped: list[Delivery] = []

    async def handle(delivery: Delivery) -> None:
        assert delivery.reply_to
        if not delivery.redelivered:
            working.set()
            await release.wait()  # the command is in hand when the connection dies
        if delivery.stale:
            # Our connection died: the broker gives the request to the next consumer (us,
            # reconnected), which answers it. Answering here too would answer twice.
            dropped.append(delivery)
            return
        reply = Reply(200, {"status": "SUCCESS", "redelivered": delivery.redelivered})
        await send_reply(bus, delivery.reply_to, delivery.correlation_id, reply)
        await delivery.ack()

    await bus.consume(COMMANDS_QUEUE, handle)
    connection = await aio_pika.connect(amqp_url_for("alice"))  # the client is not cut
    async with connection:
        channel = await connection.channel()
        replies: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        reply_queue = await channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
        await reply_queue.consume(replies.put, no_ack=True)
        exchange = await channel.get_exchange(COMMANDS_EXCHANGE)
        await exchange.publish(
            aio_pika.Message(
                b'{"method": "PUT", "path": "/vm/a/status/stop"}',
                reply_to="amq.rabbitmq.reply-to",
                correlation_id="c-1",
                user_id="alice",
            ),
            "command",
        )
        await asyncio.wait_for(working.wait(), 5)
        amqp_proxy.cut()
        await _until(lambda: bus.reconnects == 1)
        release.set()
        first = await asyncio.wait_for(replies.get(), 10)
        await asyncio.sleep(0.3)
        assert replies.empty()
    assert first.correlation_id == "c-1"
    assert decode_object(first.body) == {"code": 200, "status": "SUCCESS", "redelivered": True}
    assert len(dropped) == 1


async def test_reconnect_redeclares_and_reconsumes(
    make_bus: MakeBus,
    make_client: Callable[..., Awaitable[BusClient]],
    amqp_proxy: TcpProxy,
    amqp_vhost: str,
    amqp_channel: aio_pika.abc.AbstractChannel,
) -> None:
    """Topology deleted while we were away (a broker reset) is back after the reconnect."""
    bus = await make_bus(url=amqp_proxy.url("vmd", "vmd", amqp_vhost))

    async def answer(delivery: Delivery) -> None:
        assert delivery.reply_to
        await send_reply(bus, delivery.reply_to, delivery.correlation_id, Reply(200, {}))
        await delivery.ack()

    await bus.consume(COMMANDS_QUEUE, answer)
    amqp_proxy.block()
    await _until(lambda: not bus.connected)
    await amqp_channel.queue_delete(COMMANDS_QUEUE, if_unused=False, if_empty=False)
    await amqp_channel.exchange_delete(COMMANDS_EXCHANGE)
    await asyncio.sleep(0.3)  # a few failed reconnects
    amqp_proxy.unblock()
    await _until(lambda: bus.connected)
    assert bus.reconnects == 1 and bus.generation >= 2
    client = await make_client("alice")
    assert (await client.call(Request("GET", "/vm/status"), timeout=5)).code == 200


async def test_queue_deleted_under_the_consumer_is_recovered(
    make_bus: MakeBus,
    make_client: Callable[..., Awaitable[BusClient]],
    amqp_channel: aio_pika.abc.AbstractChannel,
) -> None:
    """The broker cancels the consumer (basic.cancel): handled by the reconnect path."""
    bus = await make_bus()

    async def answer(delivery: Delivery) -> None:
        assert delivery.reply_to
        await send_reply(bus, delivery.reply_to, delivery.correlation_id, Reply(200, {}))
        await delivery.ack()

    await bus.consume(COMMANDS_QUEUE, answer)
    await amqp_channel.queue_delete(COMMANDS_QUEUE, if_unused=False, if_empty=False)
    await _until(lambda: bus.reconnects == 1 and bus.connected)
    client = await make_client("alice")
    assert (await client.call(Request("GET", "/vm/status"), timeout=5)).code == 200


async def test_publish_while_the_broker_is_unreachable_fails_in_time(
    make_bus: MakeBus, bus_settings: Settings, amqp_proxy: TcpProxy, amqp_vhost: str
) -> None:
    bus = await make_bus(url=amqp_proxy.url("vmd", "vmd", amqp_vhost))
    client = BusClient(bus_settings("alice", url=amqp_proxy.url("alice", "alice", amqp_vhost)))
    await client.start()
    try:
        amqp_proxy.block()
        await _until(lambda: not bus.connected)
        started = time.monotonic()
        with pytest.raises(NotConnected, match=r"not connected to the broker .* within 0.3s"):
            await bus.publish(Outgoing("", "somewhere", encode({})), timeout=0.3)
        with pytest.raises(NotConnected, match=r"within 0\.3s"):
            await client.call(Request("GET", "/vm/status"), timeout=0.3)
        assert time.monotonic() - started < 5  # bounded, not hanging (generous on a busy box)
        amqp_proxy.unblock()
        await _until(lambda: bus.connected)
        await bus.publish(Outgoing("", "somewhere", encode({}), mandatory=False), timeout=5)
    finally:
        await client.close()


async def test_first_connect_retries_while_the_broker_starts(
    bus_settings: Settings, amqp_proxy: TcpProxy, amqp_vhost: str
) -> None:
    amqp_proxy.block()
    bus = Bus(
        bus_settings(url=amqp_proxy.url("vmd", "vmd", amqp_vhost), connect_attempts=100),
        topology=DAEMON,
    )
    asyncio.get_running_loop().call_later(0.3, amqp_proxy.unblock)
    await bus.start()
    try:
        assert bus.connected and bus.reconnects == 0
    finally:
        await bus.close()


async def test_first_connect_gives_up_after_its_attempts(
    bus_settings: Settings, amqp_proxy: TcpProxy, amqp_vhost: str
) -> None:
    amqp_proxy.block()
    bus = Bus(bus_settings(url=amqp_proxy.url("vmd", "vmd", amqp_vhost), connect_attempts=3))
    with pytest.raises(ConnectFailed, match=r"cannot connect to amqp://vmd:\*\*\*@.* after 3 att"):
        await bus.start()


@pytest.mark.parametrize(
    ("url", "error"),
    [
        pytest.param("amqp://alice:wrong@127.0.0.1:5672/{vhost}", "ACCESS_REFUSED", id="password"),
        pytest.param(
            "amqp://alice:alice@127.0.0.1:5672/no-such-vhost", "vhost 'no-such-vhost'", id="vhost"
        ),
    ],
)
async def test_refused_login_fails_at_once(
    bus_settings: Settings, amqp_vhost: str, url: str, error: str
) -> None:
    client = BusClient(bus_settings(url=url.format(vhost=amqp_vhost), connect_attempts=50))
    started = time.monotonic()
    with pytest.raises(ConnectFailed, match=error) as info:
        await client.start()
    assert "wrong" not in str(info.value)  # the password is not shown
    assert time.monotonic() - started < 5  # not 50 attempts
