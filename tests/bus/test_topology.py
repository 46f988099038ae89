"""protocol.md §1: the objects vmd declares, exactly, and idempotently."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable

import aio_pika
import aiormq
import pytest
from support.bus import publish_events

from vmd.bus import DAEMON, Bus, BusError, Delivery, Event, agent_topology, node_tasks
from vmd.bus.topology import (
    AGENT_EXCHANGE,
    COMMANDS_EXCHANGE,
    COMMANDS_QUEUE,
    DEAD_QUEUE,
    EVENTS_EXCHANGE,
    ORDERS_EXCHANGE,
    REPORTS_QUEUE,
    task_queue,
)


def _rabbitmqctl(*args: str) -> list[list[str]]:
    out = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, check=True, timeout=60
    )
    return [line.split("\t") for line in out.stdout.splitlines()[1:] if line.strip()]


async def test_declared_exactly(make_bus: Callable[..., Awaitable[Bus]], amqp_vhost: str) -> None:
    await make_bus(topology=DAEMON + node_tasks("node1"))
    exchanges = {
        row[0]: row[1:]
        for row in _rabbitmqctl(
            "list_exchanges", "-p", amqp_vhost, "name", "type", "durable", "auto_delete"
        )
        if row[0].startswith("vmd.")
    }
    assert exchanges == {
        COMMANDS_EXCHANGE: ["direct", "true", "false"],
        EVENTS_EXCHANGE: ["topic", "true", "false"],
        AGENT_EXCHANGE: ["direct", "true", "false"],
        ORDERS_EXCHANGE: ["direct", "true", "false"],
    }
    queues = {
        row[0]: row[1:]
        for row in _rabbitmqctl(
            "list_queues",
            "-p",
            amqp_vhost,
            "name",
            "durable",
            "auto_delete",
            "exclusive",
            "arguments",
        )
        if row[0].startswith("vmd.")
    }
    assert queues[COMMANDS_QUEUE] == [
        "true",
        "false",
        "false",
        '[{"x-single-active-consumer",true}]',
    ]
    assert queues[DEAD_QUEUE] == ["true", "false", "false", "[]"]
    assert queues[REPORTS_QUEUE] == [
        "true",
        "false",
        "false",
        '[{"x-single-active-consumer",true}]',
    ]
    assert queues[task_queue("node1")] == [
        "true",
        "false",
        "false",
        '[{"x-dead-letter-exchange","vmd.agent"},{"x-dead-letter-routing-key","report"},'
        '{"x-single-active-consumer",true}]',
    ]
    assert set(queues) == {COMMANDS_QUEUE, DEAD_QUEUE, REPORTS_QUEUE, task_queue("node1")}
    bindings = {
        (row[0], row[1], row[2])
        for row in _rabbitmqctl(
            "list_bindings", "-p", amqp_vhost, "source_name", "destination_name", "routing_key"
        )
        if row[0].startswith("vmd.")
    }
    assert bindings == {
        (COMMANDS_EXCHANGE, COMMANDS_QUEUE, "command"),
        (AGENT_EXCHANGE, REPORTS_QUEUE, "report"),
        (ORDERS_EXCHANGE, task_queue("node1"), "task.node1"),
    }


async def test_the_old_binding_of_a_task_queue_to_the_reports_exchange_is_removed(
    make_bus: Callable[..., Awaitable[Bus]], amqp_vhost: str,
    amqp_channel: aio_pika.abc.AbstractChannel,
) -> None:
    """Before orders had their own exchange, task queues were bound to vmd.agent, where every
    agent may publish: an old broker's binding would let one agent reach another's queue."""
    bus = await make_bus(topology=DAEMON + node_tasks("node1"))
    queue = await amqp_channel.get_queue(task_queue("node1"), ensure=False)
    await queue.bind(AGENT_EXCHANGE, "task.node1")
    await bus.declare(node_tasks("node1"))
    bindings = {
        (row[0], row[1], row[2])
        for row in _rabbitmqctl(
            "list_bindings", "-p", amqp_vhost, "source_name", "destination_name", "routing_key"
        )
        if row[1] == task_queue("node1")
    }
    assert bindings == {("", task_queue("node1"), task_queue("node1")),
                        (ORDERS_EXCHANGE, task_queue("node1"), "task.node1")}


async def test_an_outside_client_can_declare_the_same_objects(
    make_bus: Callable[..., Awaitable[Bus]], amqp_channel: aio_pika.abc.AbstractChannel
) -> None:
    """The acceptance suite declares with plain aio-pika: equivalent arguments pass."""
    await make_bus()
    ch = amqp_channel
    await ch.declare_exchange(COMMANDS_EXCHANGE, "direct", durable=True)
    await ch.declare_exchange(EVENTS_EXCHANGE, "topic", durable=True)
    await ch.declare_queue(
        COMMANDS_QUEUE, durable=True, arguments={"x-single-active-consumer": True}
    )
    await ch.declare_queue(DEAD_QUEUE, durable=True)


@pytest.mark.parametrize(
    ("name", "kind", "arguments"),
    [
        pytest.param(COMMANDS_QUEUE, "queue", None, id="commands-without-sac"),
        pytest.param(DEAD_QUEUE, "queue", {"x-single-active-consumer": True}, id="dead-with-sac"),
        pytest.param(EVENTS_EXCHANGE, "direct", None, id="events-as-direct"),
    ],
)
async def test_a_different_declaration_is_refused(
    make_bus: Callable[..., Awaitable[Bus]],
    amqp_channel: aio_pika.abc.AbstractChannel,
    name: str,
    kind: str,
    arguments: dict[str, bool] | None,
) -> None:
    """The other half of "exactly": the broker holds our arguments, not some others."""
    await make_bus()
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
        if kind == "queue":
            await amqp_channel.declare_queue(name, durable=True, arguments=arguments)
        else:
            await amqp_channel.declare_exchange(name, kind, durable=True)


async def test_redeclaring_is_idempotent(
    make_bus: Callable[..., Awaitable[Bus]], amqp_channel: aio_pika.abc.AbstractChannel
) -> None:
    first = await make_bus()
    await publish_events(first, [])
    queue = await amqp_channel.declare_queue(COMMANDS_QUEUE, passive=True)
    await amqp_channel.default_exchange.publish(aio_pika.Message(b"{}"), COMMANDS_QUEUE)
    # A second instance (hot standby), the agent's declarations and a runtime declare.
    second = await make_bus(topology=DAEMON + agent_topology("node2"))
    await second.declare(node_tasks("node2"))
    await first.declare(DAEMON)
    # Re-declaring kept the queued message.
    queue = await amqp_channel.declare_queue(COMMANDS_QUEUE, passive=True)
    assert queue.declaration_result.message_count == 1
    assert first.connected and second.connected


async def test_a_conflicting_runtime_declaration_is_an_error_and_the_bus_recovers(
    make_bus: Callable[..., Awaitable[Bus]], amqp_channel: aio_pika.abc.AbstractChannel
) -> None:
    """The broker closes the channel on a refused declaration: the reconnect path takes over."""
    bus = await make_bus()
    await amqp_channel.declare_queue(task_queue("node5"), durable=True)  # without our arguments
    with pytest.raises(BusError, match="PRECONDITION_FAILED"):
        await bus.declare(node_tasks("node5"))
    await _reconnected(bus, 1)
    await publish_events(bus, [Event("vm.o.u.status_change", {})])
    await bus.declare(node_tasks("node6"))  # the refused one is not re-declared on reconnects
    assert bus.connected and bus.reconnects == 1


async def test_consuming_a_missing_queue_is_an_error_and_the_bus_recovers(
    make_bus: Callable[..., Awaitable[Bus]],
) -> None:
    bus = await make_bus()
    with pytest.raises(BusError, match=r"cannot consume 'vmd\.nowhere'.*NOT_FOUND"):
        await bus.consume("vmd.nowhere", _never)
    await _reconnected(bus, 1)
    assert bus.consumers == ()


async def _reconnected(bus: Bus, reconnects: int) -> None:
    async with asyncio.timeout(10):
        while not (bus.connected and bus.reconnects >= reconnects):
            await asyncio.sleep(0.01)


async def _never(delivery: Delivery) -> None:
    raise AssertionError("no delivery expected")
