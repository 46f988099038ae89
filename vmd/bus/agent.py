"""Agent-protocol messages as they travel: built for publishing, decoded on receipt (both sides).

The daemon sends orders to a node's task queue (through `vmd.agent.orders`) and consumes
`vmd.agent.reports`; an agent consumes its task queue and publishes reports (through
`vmd.agent`). What travels is defined in `vmd.bus.agent_messages`; how it travels is decided
here:

- every message carries its sender's broker user as `user_id` (RabbitMQ refuses a message
  whose `user_id` is not the connection's user): the receiver checks it is the sender it
  expects (docs/security.md), so `order_message`/`report_message` take the sender's user;
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
from vmd.bus.topology import (
    AGENT_EXCHANGE,
    ORDERS_EXCHANGE,
    REPORT_ROUTING_KEY,
    task_routing_key,
)


def order_message(order: AgentOrder, *, user_id: str | None = None,
                  now: float | None = None) -> Outgoing:
    """An order as published; `user_id` is the daemon's broker user (agents refuse an order
    without it)."""
    value = to_json(order)
    ttl = None
    if isinstance(order, AgentTask):
        ttl = order.ttl_ms(time.time() if now is None else now)
    return Outgoing(
        ORDERS_EXCHANGE,
        task_routing_key(order.node),
        codec.encode(value),
        type=value["kind"],
        expiration_ms=ttl,
        user_id=user_id,
    )


def report_message(report: AgentReport, *, user_id: str | None = None) -> Outgoing:
    """A report as published; `user_id` is the agent's broker user (the daemon refuses a
    report without it)."""
    value = to_json(report)
    heartbeat = isinstance(report, Heartbeat)
    return Outgoing(
        AGENT_EXCHANGE,
        REPORT_ROUTING_KEY,
        codec.encode(value),
        persistent=not heartbeat,
        type=value["kind"],
        expiration_ms=int(report.interval * 3000) if isinstance(report, Heartbeat) else None,
        user_id=user_id,
    )


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
    """A delivery from `vmd.agent.reports`. Raises `ProtocolError` (dead-letter it).

    Decoding says nothing about trust: a `TaskUndelivered` is only a dead-lettered task when
    its `user_id` is the daemon's own (the broker keeps the publisher's on the dead-lettered
    copy, and anyone may set `x-death` headers); the caller checks it (vmd.daemon.reports)."""
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
