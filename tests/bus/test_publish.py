"""Publishing: events pipelined yet in order, persistent and confirmed; mandatory returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aio_pika
import pytest
from support.bus import publish_events

from vmd.bus import Bus, Event, Outgoing, Unroutable, decode_object, encode
from vmd.bus.topology import EVENTS_EXCHANGE

MakeBus = Callable[..., Awaitable[Bus]]


async def _subscriber(
    channel: aio_pika.abc.AbstractChannel, name: str
) -> aio_pika.abc.AbstractQueue:
    """What an event subscriber does: a durable queue bound to the events it wants."""
    queue = await channel.declare_queue(name, durable=True)
    await queue.bind(EVENTS_EXCHANGE, "vm.#")
    return queue


async def test_event_batch_is_confirmed_in_order_and_persistent(
    make_bus: MakeBus, amqp_channel: aio_pika.abc.AbstractChannel
) -> None:
    bus = await make_bus()
    queue = await _subscriber(amqp_channel, "vmd.test.events")
    try:
        events = [
            Event(f"vm.owner.vm{i % 5}.status_change", {"uuid": f"vm{i % 5}", "seq": i})
            for i in range(500)
        ]
        await publish_events(bus, events)
        # Confirmed means enqueued: all are there as soon as the call returns.
        declared = await amqp_channel.declare_queue("vmd.test.events", passive=True)
        assert declared.declaration_result.message_count == 500
        received = []
        async with queue.iterator() as it:
            async for message in it:
                await message.ack()
                received.append(message)
                if len(received) == 500:
                    break
        assert [decode_object(m.body)["seq"] for m in received] == list(range(500))
        assert {m.delivery_mode for m in received} == {aio_pika.DeliveryMode.PERSISTENT}
        assert {m.content_type for m in received} == {"application/json"}
        assert received[3].routing_key == "vm.owner.vm3.status_change"
    finally:
        await amqp_channel.queue_delete("vmd.test.events")


async def test_events_without_subscribers_are_fine(make_bus: MakeBus) -> None:
    bus = await make_bus()
    await publish_events(bus, [Event("node.n1.status", {"node": "n1"})])
    assert bus.connected


async def test_mandatory_message_without_a_queue_is_unroutable(make_bus: MakeBus) -> None:
    bus = await make_bus()
    with pytest.raises(Unroutable, match="routing key 'nowhere'"):
        await bus.publish(Outgoing("", "nowhere", encode({})))
    # Unroutable is not a connection problem: the same connection carries on.
    await bus.publish(Outgoing("", "nowhere", encode({}), mandatory=False))
    assert bus.reconnects == 0


async def test_empty_batch_is_a_no_op(make_bus: MakeBus) -> None:
    bus = await make_bus()
    await bus.publish_many([])
    assert bus.generation == 1
