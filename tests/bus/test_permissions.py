"""What each role may NOT do, through the real broker (docs/security.md, "Permissions").

The vhost's users and permissions are scripts/ensure-rabbitmq's, the ones docs/security.md
prescribes; every refusal here is RabbitMQ's own (ACCESS_REFUSED closes the channel), not
vmd's. The daemon's topology (and two nodes' task queues) is declared first, as the daemon
does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import aiormq
import pytest
from support.amqp import agent_user
from support.bus import send_order

from vmd.bus import (
    DAEMON,
    AgentTask,
    Bus,
    Delivery,
    TaskUndelivered,
    decode_report,
    node_tasks,
)
from vmd.bus.topology import (
    AGENT_EXCHANGE,
    COMMANDS_EXCHANGE,
    COMMANDS_QUEUE,
    DEAD_QUEUE,
    EVENTS_EXCHANGE,
    ORDERS_EXCHANGE,
    REPORT_ROUTING_KEY,
    REPORTS_QUEUE,
    task_queue,
    task_routing_key,
)
from vmd.model import Action, NodeName, TaskId, VmUuid

ALICE_OWNER = "8a1a4e6c-0000-4000-8000-000000000001"
BOB_OWNER = "8a1a4e6c-0000-4000-8000-000000000002"

Op = Callable[[aio_pika.abc.AbstractChannel], Awaitable[Any]]


@pytest.fixture
async def topology(make_bus: Callable[..., Awaitable[Bus]]) -> Bus:
    return await make_bus(topology=DAEMON + node_tasks("node1") + node_tasks("node2"))


async def _outcome(url: str, action: Op) -> str:
    """"ok", or "refused" when the broker refused it (ACCESS_REFUSED)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        try:
            await action(channel)
        except aiormq.exceptions.ChannelAccessRefused:
            return "refused"
        return "ok"


def publish(exchange: str, key: str, user: str) -> Op:
    async def act(channel: aio_pika.abc.AbstractChannel) -> None:
        target = (channel.default_exchange if exchange == ""
                  else await channel.get_exchange(exchange, ensure=False))
        body = json.dumps({"v": 1, "kind": "sync_request", "node": "node2", "reason": "x"})
        await target.publish(aio_pika.Message(body.encode(), user_id=user), key, timeout=10)
    return act


async def _ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    pass


def consume(queue: str) -> Op:
    async def act(channel: aio_pika.abc.AbstractChannel) -> None:
        declared = await channel.get_queue(queue, ensure=False)
        await declared.consume(_ignore, no_ack=True)
    return act


def bind(queue: str | None, exchange: str, key: str) -> Op:
    async def act(channel: aio_pika.abc.AbstractChannel) -> None:
        declared = (await channel.declare_queue(exclusive=True) if queue is None
                    else await channel.get_queue(queue, ensure=False))
        await declared.bind(exchange, key)
    return act


def delete(queue: str) -> Op:
    async def act(channel: aio_pika.abc.AbstractChannel) -> None:
        await channel.queue_delete(queue)
    return act


AGENT1 = agent_user("node1")

REFUSED = [
    # An owner: nothing of the agent protocol, nobody else's events, no vmd object.
    pytest.param("alice", publish(ORDERS_EXCHANGE, task_routing_key("node2"), "alice"),
                 id="owner-publishes-an-order"),
    pytest.param("alice", publish(AGENT_EXCHANGE, REPORT_ROUTING_KEY, "alice"),
                 id="owner-publishes-a-report"),
    pytest.param("alice", publish("", task_queue("node2"), "alice"),
                 id="owner-publishes-into-a-task-queue"),
    pytest.param("alice", bind(None, EVENTS_EXCHANGE, f"vm.{BOB_OWNER}.#"),
                 id="owner-binds-another-owners-events"),
    pytest.param("alice", bind(None, EVENTS_EXCHANGE, "#"), id="owner-binds-every-event"),
    pytest.param("alice", bind(None, EVENTS_EXCHANGE, "node.#"), id="owner-binds-node-events"),
    pytest.param("alice", consume(COMMANDS_QUEUE), id="owner-reads-the-requests"),
    pytest.param("alice", consume(REPORTS_QUEUE), id="owner-reads-the-reports"),
    pytest.param("alice", consume(DEAD_QUEUE), id="owner-reads-the-dead-letters"),
    pytest.param("alice", delete(COMMANDS_QUEUE), id="owner-deletes-the-command-queue"),
    # A node's agent: not another node's tasks, not an order, not a binding, no deletion.
    pytest.param(AGENT1, consume(task_queue("node2")), id="agent-reads-another-nodes-tasks"),
    pytest.param(AGENT1, publish(ORDERS_EXCHANGE, task_routing_key("node2"), AGENT1),
                 id="agent-publishes-an-order"),
    pytest.param(AGENT1, publish("", task_queue("node2"), AGENT1),
                 id="agent-publishes-into-another-task-queue"),
    pytest.param(AGENT1, publish(COMMANDS_EXCHANGE, "command", AGENT1),
                 id="agent-sends-a-request"),
    pytest.param(AGENT1, bind(task_queue("node1"), ORDERS_EXCHANGE, task_routing_key("node2")),
                 id="agent-binds-its-queue-to-another-nodes-orders"),
    pytest.param(AGENT1, consume(REPORTS_QUEUE), id="agent-reads-the-reports"),
    pytest.param(AGENT1, delete(REPORTS_QUEUE), id="agent-deletes-the-reports-queue"),
    pytest.param(AGENT1, delete(task_queue("node2")), id="agent-deletes-another-task-queue"),
    # The gateway: requests only (as anyone: it is an impersonator), never agent traffic.
    pytest.param("vmd-api", publish(ORDERS_EXCHANGE, task_routing_key("node1"), "vmd"),
                 id="gateway-publishes-an-order-as-the-daemon"),
    pytest.param("vmd-api", publish(AGENT_EXCHANGE, REPORT_ROUTING_KEY, AGENT1),
                 id="gateway-publishes-a-report-as-an-agent"),
    pytest.param("vmd-api", bind(None, EVENTS_EXCHANGE, "#"), id="gateway-reads-events"),
    # An admin reads every event but sends nothing but requests.
    pytest.param("admin", publish(ORDERS_EXCHANGE, task_routing_key("node1"), "admin"),
                 id="admin-publishes-an-order"),
    pytest.param("admin", publish(AGENT_EXCHANGE, REPORT_ROUTING_KEY, "admin"),
                 id="admin-publishes-a-report"),
]


@pytest.mark.parametrize(("user", "action"), REFUSED)
async def test_refused(topology: Bus, amqp_url_for: Callable[[str], str], user: str,
                       action: Op) -> None:
    assert await _outcome(amqp_url_for(user), action) == "refused"


ALLOWED = [
    pytest.param("alice", publish(COMMANDS_EXCHANGE, "command", "alice"), id="owner-request"),
    pytest.param("alice", bind(None, EVENTS_EXCHANGE, f"vm.{ALICE_OWNER}.#"),
                 id="owner-binds-its-vm-events"),
    pytest.param("alice", bind(None, EVENTS_EXCHANGE, f"task.{ALICE_OWNER}.*.done"),
                 id="owner-binds-its-task-events"),
    pytest.param("admin", bind(None, EVENTS_EXCHANGE, "#"), id="admin-binds-every-event"),
    pytest.param("vmd-api", publish(COMMANDS_EXCHANGE, "command", "alice"),
                 id="gateway-request-for-a-principal"),
    pytest.param(AGENT1, publish(AGENT_EXCHANGE, REPORT_ROUTING_KEY, AGENT1),
                 id="agent-report"),
    pytest.param(AGENT1, consume(task_queue("node1")), id="agent-reads-its-tasks"),
]


@pytest.mark.parametrize(("user", "action"), ALLOWED)
async def test_allowed(topology: Bus, amqp_url_for: Callable[[str], str], user: str,
                       action: Op) -> None:
    """The same helpers succeed where the role needs it: the refusals above are not a
    broken test."""
    assert await _outcome(amqp_url_for(user), action) == "ok"


async def test_a_dead_lettered_task_keeps_the_daemons_user_id(
    make_bus: Callable[..., Awaitable[Bus]]
) -> None:
    """What the daemon believes a `TaskUndelivered` on (vmd.daemon.reports): RabbitMQ keeps
    the original publisher's `user_id` when it dead-letters an expired message."""
    daemon = await make_bus(topology=DAEMON + node_tasks("node3"))
    seen: asyncio.Queue[Delivery] = asyncio.Queue()

    async def handle(delivery: Delivery) -> None:
        seen.put_nowait(delivery)
        await delivery.ack()

    await daemon.consume(REPORTS_QUEUE, handle)
    now = time.time()
    task = AgentTask(TaskId("0-00000000-dead"), VmUuid("8a1a4e6c-0000-4000-8000-0000000000aa"),
                     "web01.example.com", NodeName("node3"), Action.STOP, {}, now, now + 0.05)
    await send_order(daemon, task, now=now)
    delivery = await asyncio.wait_for(seen.get(), 10)
    assert delivery.user_id == "vmd"
    assert delivery.header("x-first-death-reason") in ("expired", b"expired")
    assert decode_report(delivery) == TaskUndelivered(task, "expired")
