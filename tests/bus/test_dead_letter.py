"""protocol.md §3: what vmd can neither answer nor parse goes to `vmd.dead` with `x-vmd-error`;
a handler that crashes twice on the same message cannot crash-loop the service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aio_pika
import pytest
from support.amqp import message_count, message_count_settles

from vmd.bus import Bus, BusFailed, Delivery
from vmd.bus.topology import COMMANDS_EXCHANGE, COMMANDS_QUEUE, DEAD_QUEUE

MakeBus = Callable[..., Awaitable[Bus]]


async def _get(
    channel: aio_pika.abc.AbstractChannel, queue: str
) -> aio_pika.abc.AbstractIncomingMessage:
    q = await channel.get_queue(queue)
    for _ in range(100):
        message = await q.get(no_ack=True, fail=False)
        if message is not None:
            return message
        await asyncio.sleep(0.02)
    raise AssertionError(f"nothing in {queue}")


async def test_unanswerable_request_is_dead_lettered(
    make_bus: MakeBus,
    amqp_url_for: Callable[[str], str],
    amqp_channel: aio_pika.abc.AbstractChannel,
) -> None:
    bus = await make_bus()
    done = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        assert delivery.reply_to is None
        await delivery.dead_letter("Malformed request: body is not JSON")
        assert delivery.settled
        done.set()

    await bus.consume(COMMANDS_QUEUE, handle)
    connection = await aio_pika.connect(amqp_url_for("alice"))
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(COMMANDS_EXCHANGE)
        await exchange.publish(
            aio_pika.Message(
                b"not json",
                user_id="alice",
                message_id="m-9",
                correlation_id="c-9",
                headers={"stream": True},
            ),
            "command",
        )
        await asyncio.wait_for(done.wait(), 5)
    dead = await _get(amqp_channel, DEAD_QUEUE)
    assert dead.body == b"not json"
    assert dead.headers["x-vmd-error"] == "Malformed request: body is not JSON"
    assert dead.headers["x-vmd-user-id"] == "alice"
    assert dead.headers["x-vmd-exchange"] == COMMANDS_EXCHANGE
    assert dead.headers["x-vmd-routing-key"] == "command"
    assert dead.headers["stream"] is True
    assert dead.message_id == "m-9"
    assert dead.correlation_id == "c-9"
    assert await message_count(amqp_channel, COMMANDS_QUEUE) == 0


async def test_handler_crash_fails_the_bus_then_dead_letters_on_redelivery(
    make_bus: MakeBus, amqp_channel: aio_pika.abc.AbstractChannel
) -> None:
    seen: list[bool] = []

    async def crash(delivery: Delivery) -> None:
        seen.append(delivery.redelivered)
        raise ValueError("boom")

    first = await make_bus()
    await first.consume(COMMANDS_QUEUE, crash)
    await amqp_channel.default_exchange.publish(aio_pika.Message(b"{}"), COMMANDS_QUEUE)
    # A first failure is a bug: the bus stops loudly; the message is not lost.
    with pytest.raises(BusFailed, match="boom"):
        await asyncio.wait_for(first.wait_closed(), 5)
    await first.close()
    assert await message_count_settles(amqp_channel, COMMANDS_QUEUE, 1) == 1

    second = await make_bus()
    await second.consume(COMMANDS_QUEUE, crash)
    with pytest.raises(BusFailed, match="boom"):
        await asyncio.wait_for(second.wait_closed(), 5)
    assert seen == [False, True]
    dead = await _get(amqp_channel, DEAD_QUEUE)
    assert dead.headers["x-vmd-error"] == "handler failed twice: ValueError: boom"
    assert await message_count(amqp_channel, COMMANDS_QUEUE) == 0


async def test_settling_twice_is_a_bug(
    make_bus: MakeBus, amqp_channel: aio_pika.abc.AbstractChannel
) -> None:
    bus = await make_bus()
    errors: list[BaseException] = []
    done = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        assert await delivery.ack()
        try:
            await delivery.reject(requeue=True)
        except RuntimeError as exc:
            errors.append(exc)
        done.set()

    await bus.consume(COMMANDS_QUEUE, handle)
    await amqp_channel.default_exchange.publish(aio_pika.Message(b"{}"), COMMANDS_QUEUE)
    await asyncio.wait_for(done.wait(), 5)
    assert len(errors) == 1 and "settled twice" in str(errors[0])
    assert bus.connected
