"""Acks once per turn (`vmd.bus.ack_all`): one `basic.ack(multiple=True)` where it may cover
the deliveries, single acks where a lower delivery of the channel is still unsettled.

On the real broker: what a wrong multiple ack would do is visible there, a held delivery
acked with the rest (it would not come back when the connection closes) or a channel
closed by the broker for an unknown tag (an ack racing a settlement in flight). The acks
the broker got are seen by recording the consumer channel's `basic_ack` calls (passed on).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import pytest
from support.amqp import message_count_settles

from vmd.bus import Bus, Delivery, TagLedger, ack_all
from vmd.bus.topology import COMMANDS_QUEUE

MakeBus = Callable[..., Awaitable[Bus]]


async def _kept(bus: Bus, channel: aio_pika.abc.AbstractChannel, n: int) -> list[Delivery]:
    """Publish `n`, consume them unsettled; the list goes on growing with later ones."""
    for i in range(n):
        await channel.default_exchange.publish(aio_pika.Message(str(i).encode()), COMMANDS_QUEUE)
    kept: list[Delivery] = []

    async def keep(delivery: Delivery) -> None:
        kept.append(delivery)

    await bus.consume(COMMANDS_QUEUE, keep, prefetch=n)
    async with asyncio.timeout(10):
        while len(kept) < n:
            await asyncio.sleep(0.01)
    return kept


def _record(monkeypatch: pytest.MonkeyPatch, delivery: Delivery) -> list[tuple[int, bool]]:
    """The (tag, multiple) of every basic.ack sent on the delivery's channel from now on."""
    channel: Any = delivery._channel
    sent: list[tuple[int, bool]] = []
    real = channel.basic_ack

    async def basic_ack(tag: int, multiple: bool = False, wait: bool = True) -> None:
        sent.append((tag, multiple))
        await real(tag, multiple=multiple, wait=wait)

    monkeypatch.setattr(channel, "basic_ack", basic_ack)
    return sent


def _tag(delivery: Delivery) -> int:
    return delivery._tag


async def test_one_multiple_ack_below_a_held_delivery_and_single_acks_above_it(
    make_bus: MakeBus, amqp_channel: aio_pika.abc.AbstractChannel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bus = await make_bus(drain_timeout=0.5)
    kept = await _kept(bus, amqp_channel, 8)
    sent = _record(monkeypatch, kept[0])
    held = kept[4]  # e.g. Settle.HOLD: left for the next instance
    await ack_all(kept[:4] + kept[5:])
    assert sorted(sent) == [(_tag(kept[3]), True)] + [(_tag(d), False) for d in kept[5:]]
    assert all(d.settled for d in kept if d is not held) and not held.settled
    await bus.close(drain_timeout=0.5)
    # Only the held one comes back: the multiple ack did not cover it.
    assert await message_count_settles(amqp_channel, COMMANDS_QUEUE, 1) == 1
    queue = await amqp_channel.declare_queue(COMMANDS_QUEUE, passive=True)
    message = await queue.get(no_ack=True)
    assert message is not None and message.body == b"4"


async def test_all_settled_below_is_one_multiple_ack(
    make_bus: MakeBus, amqp_channel: aio_pika.abc.AbstractChannel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bus = await make_bus(drain_timeout=0.5)
    kept = await _kept(bus, amqp_channel, 6)
    sent = _record(monkeypatch, kept[0])
    await kept[0].ack()  # settled on the wire in an earlier turn
    await ack_all(kept[1:])
    assert sent == [(_tag(kept[0]), False), (_tag(kept[5]), True)]
    await bus.close(drain_timeout=0.5)
    assert await message_count_settles(amqp_channel, COMMANDS_QUEUE, 0) == 0


@pytest.mark.parametrize("settling", ["reject", "dead_letter"])
async def test_a_lower_settlement_in_flight_keeps_the_acks_single(
    make_bus: MakeBus, amqp_channel: aio_pika.abc.AbstractChannel,
    monkeypatch: pytest.MonkeyPatch, settling: str,
) -> None:
    """A nack not yet written, or a dead-lettering waiting for its copy's confirm: a
    multiple ack written before it would settle it as acked (and the nack would then name
    an unknown tag: the broker closes the channel)."""
    bus = await make_bus(drain_timeout=0.5)
    kept = await _kept(bus, amqp_channel, 4)
    sent = _record(monkeypatch, kept[0])
    first = (kept[0].reject(requeue=False) if settling == "reject"
             else kept[0].dead_letter("test: dead-lettered"))
    await asyncio.gather(first, ack_all(kept[1:]))
    assert not [s for s in sent if s[1]]  # no multiple ack
    assert sorted(t for t, _ in sent if t != _tag(kept[0])) == [_tag(d) for d in kept[1:]]
    # The channel is fine: one more message comes on it and its ack goes through.
    await amqp_channel.default_exchange.publish(aio_pika.Message(b"late"), COMMANDS_QUEUE)
    async with asyncio.timeout(10):
        while len(kept) < 5:
            await asyncio.sleep(0.01)
    assert kept[4].body == b"late" and await kept[4].ack()
    await bus.close(drain_timeout=0.5)
    assert await message_count_settles(amqp_channel, COMMANDS_QUEUE, 0) == 0


def test_the_ledger_rule() -> None:
    ledger = TagLedger()
    for tag in range(1, 7):
        ledger.received(tag)
    assert ledger.cover({1, 2, 3}) == 3
    assert ledger.cover({2, 3}) == 0  # 1 is open
    assert ledger.cover({1, 3}) == 0  # 2 is open: only 1 under it, a single ack
    ledger.done(1)
    assert ledger.cover({2, 3, 5}) == 3  # 4 open: 5 alone
    assert ledger.cover({6}) == 0
    ledger.received(9)  # out of sequence: no multiple ack on this channel again
    assert ledger.cover({2, 3}) == 0
