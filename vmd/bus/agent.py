"""Sending and receiving agent-protocol messages over the bus (both sides share these).

The daemon sends orders to a node's task queue and consumes `vmd.agent.reports`; an agent
consumes its task queue and publishes reports. What travels is defined in
`vmd.bus.agent_messages`; how it travels is decided here:

- a task is persistent, mandatory (no task queue for that node = `Unroutable`, so the daemon
  declares `node_tasks(node)` for every node it knows before sending) and carries a TTL = the
  time left to its deadline, so the broker dead-letters it back to the reports queue if no
  agent took it in time; the agent still checks the deadline itself on receipt;
- reports are persistent and mandatory, except heartbeats, which are transient and expire
  after three intervals (a stale heartbeat says nothing; they must not pile up while the
  daemon is down);
- the AMQP `type` property repeats the kind, for people looking at queues with tools.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from vmd.bus import codec
from vmd.bus.agent_messages import (
    AgentOrder,
    AgentReport,
    AgentTask,
    Heartbeat,
    ProtocolError,
    TaskUndelivered,
    order_from_json,
    report_from_json,
    task_from_json,
    to_json,
)
from vmd.bus.delivery import Delivery
from vmd.bus.publish import Outgoing
from vmd.bus.service import Bus
from vmd.bus.topology import AGENT_EXCHANGE, REPORT_ROUTING_KEY, task_routing_key


def order_message(order: AgentOrder, *, now: float | None = None) -> Outgoing:
    value = to_json(order)
    ttl = None
    if isinstance(order, AgentTask):
        ttl = order.ttl_ms(time.time() if now is None else now)
    return Outgoing(
        AGENT_EXCHANGE,
        task_routing_key(order.node),
        codec.encode(value),
        type=value["kind"],
        expiration_ms=ttl,
    )


def report_message(report: AgentReport) -> Outgoing:
    value = to_json(report)
    heartbeat = isinstance(report, Heartbeat)
    return Outgoing(
        AGENT_EXCHANGE,
        REPORT_ROUTING_KEY,
        codec.encode(value),
        persistent=not heartbeat,
        type=value["kind"],
        expiration_ms=int(report.interval * 3000) if isinstance(report, Heartbeat) else None,
    )


async def send_order(bus: Bus, order: AgentOrder, *, now: float | None = None) -> None:
    """Daemon -> agent. `now` (POSIX seconds) is injectable for tests of the TTL."""
    await bus.publish(order_message(order, now=now))


async def send_report(bus: Bus, report: AgentReport) -> None:
    """Agent -> daemon."""
    await bus.publish(report_message(report))


def _death_reason(headers: Mapping[str, Any]) -> str | None:
    reason = headers.get("x-first-death-reason")
    if reason is None:
        deaths = headers.get("x-death")
        if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
            reason = deaths[0].get("reason")
    if isinstance(reason, bytes):
        reason = reason.decode("utf-8", "replace")
    return None if reason is None else str(reason)


def _body(delivery: Delivery) -> dict[str, Any]:
    try:
        return codec.decode_object(delivery.body, limit=None)
    except codec.BodyError as exc:
        raise ProtocolError(exc.reason) from None


def decode_report(delivery: Delivery) -> AgentReport:
    """A delivery from `vmd.agent.reports`. Raises `ProtocolError` (dead-letter it)."""
    value = _body(delivery)
    if value.get("kind") == "task":
        reason = _death_reason(delivery.headers)
        if reason is None:
            raise ProtocolError("a task message on the reports queue that was not dead-lettered")
        return TaskUndelivered(task_from_json(value), reason)
    return report_from_json(value)


def decode_order(delivery: Delivery) -> AgentOrder:
    """A delivery from a node's task queue. Raises `ProtocolError` (dead-letter it)."""
    return order_from_json(_body(delivery))
