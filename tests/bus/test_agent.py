"""The agent protocol over the real broker: orders, reports, and tasks that expire unrun."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aio_pika
import pytest
from support.bus import send_order, send_report

from vmd.bus import (
    DAEMON,
    AgentReport,
    AgentTask,
    Bus,
    Delivery,
    Heartbeat,
    ProtocolError,
    SyncRequest,
    TaskResult,
    TaskUndelivered,
    Unroutable,
    agent_topology,
    decode_order,
    decode_report,
    node_tasks,
    task_queue,
)
from vmd.bus.topology import REPORTS_QUEUE
from vmd.model import Action, NodeName, OutcomeKind, TaskId, TaskOutcome, VmUuid

MakeBus = Callable[..., Awaitable[Bus]]


def _task(node: str, deadline: float, task_id: str = "0-aaaaaaaa-0000-4000-8000") -> AgentTask:
    return AgentTask(
        task_id=TaskId(task_id),
        uuid=VmUuid("8a1a4e6c-0000-4000-8000-00000000aaaa"),
        hostname="web01.example.com",
        node=NodeName(node),
        action=Action.START,
        params={"update": False},
        created=time.time(),
        deadline=deadline,
    )


async def _reports(bus: Bus) -> asyncio.Queue[AgentReport | Exception]:
    """The daemon's side: every report decoded, or the decode error."""
    out: asyncio.Queue[AgentReport | Exception] = asyncio.Queue()

    async def handle(delivery: Delivery) -> None:
        try:
            out.put_nowait(decode_report(delivery))
        except ProtocolError as exc:
            out.put_nowait(exc)
        await delivery.ack()

    await bus.consume(REPORTS_QUEUE, handle)
    return out


async def test_expired_task_goes_back_to_the_daemon(make_bus: MakeBus) -> None:
    """A task for a node whose agent is down expires at its deadline instead of waiting."""
    daemon = await make_bus(topology=DAEMON + node_tasks("node1"))
    reports = await _reports(daemon)
    task = _task("node1", deadline=time.time() + 0.3)
    await send_order(daemon, task)
    report = await asyncio.wait_for(reports.get(), 10)
    assert report == TaskUndelivered(task=task, reason="expired")


async def test_orders_and_reports_round_trip(make_bus: MakeBus) -> None:
    daemon = await make_bus(topology=DAEMON)
    agent = await make_bus(topology=agent_topology("node2"))
    await daemon.declare(node_tasks("node2"))  # what the daemon does for every node it knows
    reports = await _reports(daemon)
    orders: asyncio.Queue[Delivery] = asyncio.Queue()

    async def take(delivery: Delivery) -> None:
        orders.put_nowait(delivery)

    await agent.consume(task_queue("node2"), take)
    task = _task("node2", deadline=time.time() + 300)
    await send_order(daemon, task, now=task.deadline - 60)
    await send_order(daemon, SyncRequest(node=NodeName("node2"), reason="takeover"))
    got_task = await asyncio.wait_for(orders.get(), 5)
    assert decode_order(got_task) == task
    assert got_task.type == "task"
    assert got_task.expiration == "60000"  # the TTL is the time left to the deadline
    got_sync = await asyncio.wait_for(orders.get(), 5)
    assert decode_order(got_sync) == SyncRequest(node=NodeName("node2"), reason="takeover")
    assert got_sync.expiration is None
    await got_task.ack()
    await got_sync.ack()

    result = TaskResult(
        task_id=task.task_id,
        uuid=task.uuid,
        node=task.node,
        action=task.action,
        outcome=TaskOutcome(OutcomeKind.SUCCESS, 0, "Successfully started VM web01.example.com"),
        time=time.time(),
    )
    beat = Heartbeat(node=NodeName("node2"), time=time.time(), interval=5.0, started=1.0)
    await send_report(agent, result)
    await send_report(agent, beat)
    assert await asyncio.wait_for(reports.get(), 5) == result
    assert await asyncio.wait_for(reports.get(), 5) == beat


async def test_heartbeats_are_transient_and_expire(
    make_bus: MakeBus, amqp_channel: aio_pika.abc.AbstractChannel
) -> None:
    await make_bus(topology=DAEMON)  # the exchange and the reports queue are the daemon's
    agent = await make_bus(topology=agent_topology("node3"))
    await send_report(agent, Heartbeat(NodeName("node3"), time.time(), 2.0, 1.0))
    queue = await amqp_channel.get_queue(REPORTS_QUEUE)
    message = await queue.get(no_ack=True)
    assert message.delivery_mode == aio_pika.DeliveryMode.NOT_PERSISTENT
    assert message.headers == {} and message.type == "heartbeat"
    assert message.expiration == 6.0  # three intervals, in seconds as aio-pika shows it


async def test_task_for_a_node_without_a_queue_is_unroutable(make_bus: MakeBus) -> None:
    daemon = await make_bus(topology=DAEMON)
    with pytest.raises(Unroutable, match=r"'task\.node4'"):
        await send_order(daemon, _task("node4", deadline=time.time() + 30))


async def test_malformed_report_is_a_protocol_error(
    make_bus: MakeBus, amqp_channel: aio_pika.abc.AbstractChannel
) -> None:
    daemon = await make_bus(topology=DAEMON)
    reports = await _reports(daemon)
    exchange = await amqp_channel.get_exchange("vmd.agent")
    await exchange.publish(aio_pika.Message(b'{"v": 1, "kind": "gossip"}'), "report")
    await exchange.publish(aio_pika.Message(b'{"v": 1, "kind": "task"}'), "report")
    first = await asyncio.wait_for(reports.get(), 5)
    second = await asyncio.wait_for(reports.get(), 5)
    assert isinstance(first, ProtocolError) and "unknown report kind 'gossip'" in str(first)
    assert isinstance(second, ProtocolError) and "not dead-lettered" in str(second)
