"""The broker objects vmd relies on, written down once, declared on every (re)connect.

Public objects (protocol.md §1, names and arguments exact: a client or the acceptance suite
may declare them too, and RabbitMQ refuses a re-declaration whose arguments differ):

    exchange vmd.commands  direct, durable      clients publish requests, key "command"
    queue    vmd.commands  durable, SAC         bound to vmd.commands with key "command"
    exchange vmd.events    topic, durable       every event vmd publishes
    queue    vmd.dead      durable              requests vmd could not answer nor parse

Internal objects (the agent protocol, docs/bus.md), split so that broker permissions can
tell orders from reports (docs/security.md): only the daemon's user may write on the orders
exchange, an agent's user writes only on `vmd.agent` and reads only its own task queue.

    exchange vmd.agent.orders          direct, durable; daemon -> agents, key "task.<node>"
    exchange vmd.agent                 direct, durable; agents -> daemon, key "report"
    queue    vmd.agent.reports         durable, SAC; bound to vmd.agent/"report": results,
                                       observations, heartbeats, full syncs, ISO lists,
                                       dead-lettered tasks
    queue    vmd.agent.tasks.<node>    durable, SAC; bound to vmd.agent.orders/"task.<node>"
                                       (by the daemon: an agent may not bind); dead-letters to
                                       vmd.agent/"report", so a task whose per-message TTL
                                       (= time to its deadline) runs out goes back to the
                                       daemon instead of running hours later on a revived
                                       node. The broker keeps the daemon's `user_id` on the
                                       dead-lettered copy: that is how the daemon tells it
                                       from a forged one.

Before orders had their own exchange, task queues were bound to vmd.agent; the daemon
removes that binding (`QueueDecl.unbindings`) whenever it declares a task queue, so an
agent cannot reach another node's queue through an old broker's leftovers.

Declarations are plain data (`Topology`) so the daemon, the agent and the tests name the
same objects, and so the link can re-declare them on every reconnect (docs/architecture.md:
never trust a robust reconnect to restore topology). Every declaration is idempotent.
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

AGENT_EXCHANGE = "vmd.agent"  # reports (agents -> daemon) and dead-lettered tasks
ORDERS_EXCHANGE = "vmd.agent.orders"  # orders (daemon -> agents)
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
    # Bindings removed after declaring (left by an older topology; absent ones are a no-op).
    unbindings: tuple[tuple[str, str], ...] = ()


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

ORDERS = Topology(exchanges=(ExchangeDecl(ORDERS_EXCHANGE, ExchangeKind.DIRECT),))

# What the daemon declares at start: the public objects and its side of the agent protocol.
DAEMON = PUBLIC + AGENT + ORDERS


def _task_queue_arguments() -> Mapping[str, Any]:
    return _frozen(
        {
            SINGLE_ACTIVE_CONSUMER: True,
            "x-dead-letter-exchange": AGENT_EXCHANGE,
            "x-dead-letter-routing-key": REPORT_ROUTING_KEY,
        }
    )


def node_tasks(node: NodeName | str) -> Topology:
    """The task queue of one node and its binding to the orders exchange (declared by the
    daemon for every node it knows, before sending it anything)."""
    return Topology(
        exchanges=AGENT.exchanges + ORDERS.exchanges,
        queues=(
            QueueDecl(
                task_queue(node),
                arguments=_task_queue_arguments(),
                bindings=((ORDERS_EXCHANGE, task_routing_key(node)),),
                unbindings=((AGENT_EXCHANGE, task_routing_key(node)),),
            ),
        ),
    )


def agent_topology(node: NodeName | str) -> Topology:
    """What an agent declares: its own task queue (same arguments as the daemon's), without
    a binding and without any exchange. An agent's broker user may configure nothing else
    (docs/security.md): the daemon declares the exchanges, the reports queue and the binding,
    so until a daemon has run once the agent's reports wait (and are retried)."""
    return Topology(queues=(QueueDecl(task_queue(node), arguments=_task_queue_arguments()),))


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
        for exchange_name, routing_key in queue.unbindings:
            await declared.unbind(exchange_name, routing_key)
