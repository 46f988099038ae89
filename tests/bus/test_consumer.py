"""Consuming: arrival order, the prefetch as the only bound, and the shutdown drain."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aio_pika
from support.amqp import message_count, message_count_settles

from vmd.bus import Bus, Delivery
from vmd.bus.topology import COMMANDS_QUEUE

MakeBus = Callable[..., Awaitable[Bus]]


async def _fill(channel: aio_pika.abc.AbstractChannel, n: int) -> None:
    for i in range(n):
        await channel.default_exchange.publish(aio_pika.Message(str(i).encode()), COMMANDS_QUEUE)


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_handler_sees_deliveries_in_arrival_order(
    make_bus: MakeBus, amqp_channel: aio_pika.abc.AbstractChannel
) -> None:
    bus = await make_bus()
    await _fill(amqp_channel, 300)
    seen: list[int] = []

    async def handle(delivery: Delivery) -> None:
        seen.append(int(delivery.body))
        if len(seen) % 7 == 0:
            await asyncio.sleep(0)  # a handler that awaits must not let a later one overtake
        await delivery.ack()

    await bus.consume(COMMANDS_QUEUE, handle, prefetch=50)
    await _until(lambda: len(seen) == 300)
    assert seen == list(range(300))


async def test_prefetch_bounds_deliveries_in_hand(
    make_bus: MakeBus, amqp_channel: aio_pika.abc.AbstractChannel
) -> None:
    """A handler that keeps deliveries (hands them to workers) gets `prefetch`, no more."""
    bus = await make_bus()
    await _fill(amqp_channel, 20)
    kept: list[Delivery] = []

    async def keep(delivery: Delivery) -> None:
        kept.append(delivery)

    consumer = await bus.consume(COMMANDS_QUEUE, keep, prefetch=5)
    await _until(lambda: len(kept) == 5)
    await asyncio.sleep(0.2)
    assert len(kept) == 5 and consumer.in_hand == 5
    assert await message_count(amqp_channel, COMMANDS_QUEUE) == 15
    # Settling one lets exactly one more in.
    await kept[0].ack()
    await _until(lambda: len(kept) == 6)
    await asyncio.sleep(0.1)
    assert len(kept) == 6 and consumer.in_hand == 5


async def test_shutdown_requeues_prefetched_and_lets_in_hand_finish(
    make_bus: MakeBus, amqp_channel: aio_pika.abc.AbstractChannel
) -> None:
    bus = await make_bus(drain_timeout=3.0)
    await _fill(amqp_channel, 10)
    started: list[int] = []
    finished: list[int] = []
    release = asyncio.Event()

    async def slow(delivery: Delivery) -> None:
        started.append(int(delivery.body))
        await release.wait()  # the handler call is in progress when shutdown starts
        finished.append(int(delivery.body))
        await delivery.ack()

    consumer = await bus.consume(COMMANDS_QUEUE, slow, prefetch=10)
    await _until(lambda: started == [0] and consumer.buffered == 9)
    asyncio.get_running_loop().call_later(0.2, release.set)
    left = await bus.drain()
    assert left == 0
    assert started == finished == [0]
    # The nine prefetched but never started are back in the queue, before the connection closed.
    assert bus.connected
    assert await message_count_settles(amqp_channel, COMMANDS_QUEUE, 9) == 9


async def test_shutdown_deadline_gives_up_on_stuck_deliveries(
    make_bus: MakeBus, amqp_channel: aio_pika.abc.AbstractChannel
) -> None:
    bus = await make_bus()
    await _fill(amqp_channel, 3)
    kept: list[Delivery] = []

    async def keep(delivery: Delivery) -> None:
        kept.append(delivery)  # never settled

    await bus.consume(COMMANDS_QUEUE, keep, prefetch=3)
    await _until(lambda: len(kept) == 3)
    assert await bus.drain(timeout=0.2) == 3
    await bus.close()
    # Closing the connection gave them back to the broker.
    assert await message_count_settles(amqp_channel, COMMANDS_QUEUE, 3) == 3
    assert all(d.stale for d in kept)
    assert not await kept[0].ack()


async def test_stop_consuming_leaves_deliveries_in_hand_to_the_owner(
    make_bus: MakeBus, amqp_channel: aio_pika.abc.AbstractChannel
) -> None:
    """The daemon's shutdown (docs/shutdown.md): cancel first, settle its own, close later."""
    bus = await make_bus()
    await _fill(amqp_channel, 10)
    kept: list[Delivery] = []
    gate = asyncio.Event()

    async def keep(delivery: Delivery) -> None:
        kept.append(delivery)
        if len(kept) == 4:
            await gate.wait()

    consumer = await bus.consume(COMMANDS_QUEUE, keep, prefetch=10)
    await _until(lambda: len(kept) == 4 and consumer.buffered == 6)
    assert await bus.stop_consuming() == 6
    assert consumer.in_hand == 4
    assert await message_count_settles(amqp_channel, COMMANDS_QUEUE, 6) == 6
    for delivery in kept:
        assert await delivery.ack()
    gate.set()
    assert await bus.drain(timeout=2) == 0
    assert len(kept) == 4  # nothing new was handed over after the cancel


async def test_the_loop_runs_between_two_buffered_deliveries(
    make_bus: MakeBus, amqp_channel: aio_pika.abc.AbstractChannel
) -> None:
    """A burst of deliveries is not handled as one block (issue 12): another task gets a
    turn of the loop between any two handler calls, even when the handler never awaits."""
    bus = await make_bus()
    await _fill(amqp_channel, 200)
    turns = 0
    seen: list[int] = []
    kept: list[Delivery] = []

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async def handle(delivery: Delivery) -> None:
        seen.append(turns)  # no await: what used to run back to back for a full buffer
        kept.append(delivery)

    ticking = asyncio.create_task(ticker())
    try:
        await bus.consume(COMMANDS_QUEUE, handle, prefetch=200)
        await _until(lambda: len(seen) == 200)
    finally:
        ticking.cancel()
    assert len(set(seen)) == 200, f"{200 - len(set(seen))} handled without a loop turn"
    await asyncio.gather(*(d.ack() for d in kept))
