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


# The broker users of the test nodes' agents (scripts/ensure-rabbitmq: one per node, password
# = name, allowed only its node's task queue and the reports exchange; docs/security.md).
TEST_NODES = tuple(f"node{i}" for i in range(1, 10))


def agent_user(node: str) -> str:
    return f"vmd-agent-{node}"


def auth_agents_toml(nodes: tuple[str, ...] = TEST_NODES) -> str:
    """The daemon's `[auth.agents]` table for `nodes`: each node's own agent user."""
    lines = "".join(f'"{agent_user(n)}" = ["{n}"]\n' for n in nodes)
    return f"[auth.agents]\n{lines}"
