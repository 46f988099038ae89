"""Replies only to the asker (issue 12, "Replies go wherever reply_to says"): vmd answers
over Direct Reply-to, to a server-named queue or to a queue named `<user_id>.`...; any other
`reply_to` (another user's queue, one of vmd's own) is dead-lettered with `x-vmd-error:
reply_to not allowed` and not executed."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import aio_pika
import pytest
from support.amqp import message_count, message_count_settles

from vmd.bus.topology import COMMAND_ROUTING_KEY, COMMANDS_EXCHANGE, COMMANDS_QUEUE, DEAD_QUEUE
from vmd.daemon.requests import reply_to_allowed
from vmd.model import VmStatus

from .conftest import Cloud
from .harness import eventually

START = json.dumps({"method": "PUT", "path": "/vm/web02.example.com/status/start"}).encode()


@pytest.mark.parametrize(("reply_to", "user", "allowed"), [
    pytest.param("amq.rabbitmq.reply-to", "alice", True, id="direct"),
    pytest.param("amq.rabbitmq.reply-to.g1h2AA5yZXBseUAxAAAB", "alice", True, id="direct-form"),
    pytest.param("amq.gen-JzTY20BRgKO-HjmUJj0wLg", "alice", True, id="server-named"),
    pytest.param("alice.replies", "alice", True, id="own"),
    pytest.param("bob.replies", "alice", False, id="another-users"),
    pytest.param("alice", "alice", False, id="no-dot"),
    pytest.param("alicex.replies", "alice", False, id="longer-name"),
    pytest.param("vmd.commands", "alice", False, id="vmd-queue"),
    pytest.param("vmd.dead", "vmd", False, id="vmd-queue-as-vmd"),
    pytest.param("amq.rabbitmq.reply-tox", "alice", False, id="direct-lookalike"),
    pytest.param("x.replies", None, False, id="no-user"),
    pytest.param("amq.gen-abc", None, True, id="server-named-no-user"),
])
def test_reply_to_rule(reply_to: str, user: str | None, allowed: bool) -> None:
    assert reply_to_allowed(reply_to, user) is allowed


async def _publish(url: str, user: str, reply_to: str, message_id: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(COMMANDS_EXCHANGE, ensure=False)
        await exchange.publish(aio_pika.Message(
            START, content_type="application/json", user_id=user, reply_to=reply_to,
            correlation_id="forged", message_id=message_id), COMMAND_ROUTING_KEY)


async def test_replies_to_another_users_or_vmds_queue_are_dead_lettered_not_run(
    cloud: Cloud, raw: Callable[..., Any], amqp_channel: aio_pika.abc.AbstractChannel,
    amqp_url_for: Callable[[str], str],
) -> None:
    # Bob's named queue, which alice would like vmd to fill with answers of her choosing.
    bob = await aio_pika.connect(amqp_url_for("bob"))
    async with bob:
        bob_channel = await bob.channel()
        inbox = f"bob.inbox.{uuid.uuid4().hex[:8]}"
        await bob_channel.declare_queue(inbox, exclusive=True)
        for n, target in enumerate((inbox, COMMANDS_QUEUE, DEAD_QUEUE)):
            await _publish(amqp_url_for("alice"), "alice", target, f"misdirected-{n}")
        assert await message_count_settles(amqp_channel, DEAD_QUEUE, 3) == 3
        dead = await amqp_channel.get_queue(DEAD_QUEUE)
        got = [await dead.get(no_ack=True) for _ in range(3)]
        assert [m.message_id for m in got if m] == [f"misdirected-{n}" for n in range(3)]
        assert {m.headers["x-vmd-error"] for m in got if m} == {"reply_to not allowed"}
        assert {m.headers["x-vmd-user-id"] for m in got if m} == {"alice"}
        # Handled in order: nothing came to bob, and the start never ran.
        assert await message_count(bob_channel, inbox) == 0
    assert cloud.vm("web02.example.com").status is VmStatus.STOPPED
    assert cloud.daemon.core.records_of("alice") == 0
    assert cloud.daemon.metrics.dead_lettered._value.get() == 3
    # Her own named queue is answered; the node's first task is the one of the request
    # that was allowed.
    connection = await aio_pika.connect(amqp_url_for("alice"))
    async with connection:
        channel = await connection.channel()
        own = await channel.declare_queue(f"alice.replies.{uuid.uuid4().hex[:8]}",
                                          exclusive=True)
        await _publish(amqp_url_for("alice"), "alice", own.name, "allowed-1")
        async with own.iterator(timeout=10) as messages:
            reply = json.loads((await anext(messages)).body)
    assert reply["code"] == 201
    assert (await cloud.agent.next_task()).task_id == reply["task_id"]
    await eventually(lambda: cloud.vm("web02.example.com").status is VmStatus.STARTING,
                     what="web02 starting")


async def test_a_server_named_queue_is_answered(
    cloud: Cloud, amqp_url_for: Callable[[str], str],
) -> None:
    connection = await aio_pika.connect(amqp_url_for("alice"))
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        assert queue.name.startswith("amq.gen-")
        exchange = await channel.get_exchange(COMMANDS_EXCHANGE, ensure=False)
        await exchange.publish(aio_pika.Message(
            json.dumps({"method": "GET", "path": "/vm/status"}).encode(), user_id="alice",
            reply_to=queue.name, correlation_id="c1"), COMMAND_ROUTING_KEY)
        async with queue.iterator(timeout=10) as messages:
            message = await anext(messages)
        assert message.correlation_id == "c1"
        assert json.loads(message.body)["code"] == 200
