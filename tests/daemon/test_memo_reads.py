"""The redelivery memo (answers of requests without a `message_id`) keeps only requests that
may change something: a read is answered afresh when redelivered, so a flood of big lists
without a message_id cannot fill the daemon's memory (4096 lists of 2,000 VMs: gigabytes).

aiormq gives every message it publishes a random `message_id` when it has none, so only
other clients (pika, Java, Go) reach the memo; the test makes aiormq such a client by
taking that fallback away."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import aio_pika
import aiormq.channel
import pytest

from vmd.bus.topology import COMMAND_ROUTING_KEY, COMMANDS_EXCHANGE

from .conftest import StartDaemon, seed
from .harness import FakeAgent, eventually


async def test_reads_without_message_id_are_not_remembered(
    start_daemon: StartDaemon, make_agent: Callable[..., Awaitable[FakeAgent]],
    amqp_url_for: Callable[[str], str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aiormq.channel, "UUID", lambda **_: SimpleNamespace(hex=None))
    daemon = await start_daemon()
    agent = await make_agent("node1")
    agent.add(901, "m1.example.com", state="stopped")
    await seed(daemon, agent)
    replies: dict[str, Any] = {}
    connection = await aio_pika.connect(amqp_url_for("alice"))
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)

        async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            replies[message.correlation_id or ""] = json.loads(message.body)

        await queue.consume(on_reply, no_ack=True)
        exchange = await channel.get_exchange(COMMANDS_EXCHANGE, ensure=False)
        cids = []
        for method, path in [("GET", "/vm/status"), ("GET", "/vm/m1.example.com/status"),
                             ("GET", "/vm/nothere/status"),
                             ("PUT", "/vm/m1.example.com/status/start")]:
            cid = uuid.uuid4().hex
            cids.append(cid)
            await exchange.publish(aio_pika.Message(
                json.dumps({"method": method, "path": path}).encode(), correlation_id=cid,
                reply_to=queue.name, user_id="alice"), COMMAND_ROUTING_KEY)
        await eventually(lambda: all(c in replies for c in cids), what="every answer")
    assert replies[cids[-1]]["code"] == 201
    memo = daemon.intake._memo._answers
    assert [key[1] for key in memo] == [cids[-1]]
