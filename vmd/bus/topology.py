"""The broker objects vmd relies on, written down once, declared on every (re)connect.

Public objects (protocol.md §1, names and arguments exact: a client or the acceptance suite
may declare them too, and RabbitMQ refuses a re-declaration whose arguments differ):

    exchange vmd.commands  direct, durable      clients publish requests, key "command"
    queue    vmd.commands  durable, SAC         bound to vmd.commands with key "command"
    exchange vmd.events    topic, durable       every event vmd publishes
    queue    vmd.dead      durable              requests vmd could not answer nor parse

Internal objects (the agent protocol, docs/bus.md):

    exchange vmd.agent                 direct, durable
    queue    vmd.agent.reports         durable, SAC; key "report": results, observations,
                                       heartbeats, full syncs, ISO lists, dead-lettered tasks
    queue    vmd.agent.tasks.<node>    durable, SAC; key "task.<node>"; dead-letters to
                                       vmd.agent/"report", so a task whose per-message TTL
                                       (= time to its deadline) runs out goes back to the
                                       daemon instead of running hours later on a revived node

Declarations are plain data (`Topology`) so the daemon, the agent and the tests name the
same objects, and so the link can re-declare them on every reconnect (STYLE.md: never trust
a robust reconnect to restore topology). Every declaration is idempotent.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aio_pika.abc import AbstractChannel

from vmd.model import NodeName

COMMANDS_EXCHANGE = "vmd.commands"
COMMANDS_QUEUE = "vmd.commands"
COMMAND_ROUTING_KEY = "command"
EVENTS_EXCHANGE = "vmd.events"
DEAD_QUEUE = "vmd.dead"

AGENT_EXCHANGE = "vmd.agent"
REPORTS_QUEUE = "vmd.agent.reports"
REPORT_ROUTING_KEY = "report"
TASK_QUEUE_PREFIX = "vmd.agent.tasks."

# The pseudo-queue of RabbitMQ's Direct Reply-to.
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
DEFAULT_EXCHANGE = ""

# Message headers of the public protocol.
CODE_HEADER = "code"
STREAM_HEADER = "stream"
ERROR_HEADER = "x-vmd-error"

SINGLE_ACTIVE_CONSUMER = "x-single-active-consumer"


def task_queue(node: NodeName | str) -> str:
    """The queue holding the tasks of one node's agent."""
    return f"{TASK_QUEUE_PREFIX}{node}"


def task_routing_key(node: NodeName | str) -> str:
    return f"task.{node}"


class ExchangeKind(enum.StrEnum):
    DIRECT = "direct"
    TOPIC = "topic"
    FANOUT = "fanout"


def _frozen(mapping: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True)
class ExchangeDecl:
    name: str
    kind: ExchangeKind
    durable: bool = True


@dataclass(frozen=True, slots=True)
class QueueDecl:
    name: str
    durable: bool = True
    arguments: Mapping[str, Any] = field(default_factory=_frozen)
    # (exchange, routing key) pairs.
    bindings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Topology:
    """A set of exchanges and queues (with bindings). `a + b` is their union, in order."""

    exchanges: tuple[ExchangeDecl, ...] = ()
    queues: tuple[QueueDecl, ...] = ()

    def __add__(self, other: Topology) -> Topology:
        exchanges = self.exchanges + tuple(e for e in other.exchanges if e not in self.exchanges)
        queues = self.queues + tuple(q for q in other.queues if q not in self.queues)
        return Topology(exchanges, queues)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(e.name for e in self.exchanges) | {q.name for q in self.queues}


PUBLIC = Topology(
    exchanges=(
        ExchangeDecl(COMMANDS_EXCHANGE, ExchangeKind.DIRECT),
        ExchangeDecl(EVENTS_EXCHANGE, ExchangeKind.TOPIC),
    ),
    queues=(
        QueueDecl(
            COMMANDS_QUEUE,
            arguments=_frozen({SINGLE_ACTIVE_CONSUMER: True}),
            bindings=((COMMANDS_EXCHANGE, COMMAND_ROUTING_KEY),),
        ),
        QueueDecl(DEAD_QUEUE),
    ),
)

AGENT = Topology(
    exchanges=(ExchangeDecl(AGENT_EXCHANGE, ExchangeKind.DIRECT),),
    queues=(
        QueueDecl(
            REPORTS_QUEUE,
            arguments=_frozen({SINGLE_ACTIVE_CONSUMER: True}),
            bindings=((AGENT_EXCHANGE, REPORT_ROUTING_KEY),),
        ),
    ),
)

# What the daemon declares at start: the public objects and its side of the agent protocol.
DAEMON = PUBLIC + AGENT


def node_tasks(node: NodeName | str) -> Topology:
    """The task queue of one node (declared by its agent, and by the daemon before sending)."""
    return Topology(
        exchanges=AGENT.exchanges,
        queues=(
            QueueDecl(
                task_queue(node),
                arguments=_frozen(
                    {
                        SINGLE_ACTIVE_CONSUMER: True,
                        "x-dead-letter-exchange": AGENT_EXCHANGE,
                        "x-dead-letter-routing-key": REPORT_ROUTING_KEY,
                    }
                ),
                bindings=((AGENT_EXCHANGE, task_routing_key(node)),),
            ),
        ),
    )


def agent_topology(node: NodeName | str) -> Topology:
    """What an agent declares: its task queue, and the reports queue it publishes to (so a
    report is routable, and kept, even while no daemon has ever run)."""
    return AGENT + node_tasks(node)


async def declare(channel: AbstractChannel, topology: Topology) -> None:
    """Declare exchanges first, then queues and their bindings (a binding needs both)."""
    for exchange in topology.exchanges:
        await channel.declare_exchange(exchange.name, exchange.kind.value, durable=exchange.durable)
    for queue in topology.queues:
        declared = await channel.declare_queue(
            queue.name, durable=queue.durable, arguments=dict(queue.arguments) or None
        )
        for exchange_name, routing_key in queue.bindings:
            await declared.bind(exchange_name, routing_key)
