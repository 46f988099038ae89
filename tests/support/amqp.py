"""Looking at queues from outside, as a plain aio-pika client (the acceptance suite's view)."""

from __future__ import annotations

import asyncio

import aio_pika


async def message_count(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    """Ready messages in `queue` now (delivered-but-unacked ones are not counted)."""
    declared = await channel.declare_queue(queue, passive=True)
    count = declared.declaration_result.message_count
    assert count is not None
    return count


async def message_count_settles(
    channel: aio_pika.abc.AbstractChannel, queue: str, expected: int, timeout: float = 5.0
) -> int:
    """The count once it reaches `expected` (else the last one seen after `timeout`).

    A nack, a requeue or a connection close reaches the queue asynchronously, after the call
    that sent it returned, and another connection may look before it arrived.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    count = await message_count(channel, queue)
    while count != expected and loop.time() < deadline:
        await asyncio.sleep(0.05)
        count = await message_count(channel, queue)
    return count
