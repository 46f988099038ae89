"""An in-memory `vmd.bus.Bus` for the daemon's fast tests: what the daemon publishes is kept
in a list, deliveries are real `vmd.bus.Delivery` values made without a broker, and how each
was settled is recorded (docs/testing.md, "Fast mode").

The daemon's pipeline, intake and report handler use only this much of a bus: `settings.user`
(orders carry it), `publish_many` (every turn's events, orders and replies), `declare` (a
node's task queue, seen for the first time), `reconnects` (housekeeping's metric) and, through
each delivery, `ack` / `reject` / `dead_letter`. `FakeBus` implements exactly that; a daemon
part that starts to use more fails here with an AttributeError, which is the point: the fake
must grow with the real one, never guess.

`Delivery` is the real class (the settle rules, "settled twice" included, are the product's),
given an aiormq `DeliveredMessage` built by hand, a session that is never lost unless the test
says so (`FakeBus.lose_connection`: every delivery in hand goes `stale`, as after a broker cut),
and a channel whose `basic_ack` / `basic_nack` only record.

Publishing can be made to fail: `fail_publishes = n` raises `NotConnected` for the next `n`
calls of `publish_many`, as a broker away would (the pipeline retries); `stall()` makes every
publish wait forever (a crash between a turn's write and its publish, held open).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiormq.abc
from pamqp import commands as spec
from pamqp.header import ContentHeader

from vmd.bus import (
    COMMANDS_QUEUE,
    DIRECT_REPLY_TO,
    REPORTS_QUEUE,
    AgentOrder,
    AgentReport,
    BusSettings,
    Delivery,
    NotConnected,
    Outgoing,
    Topology,
    decode_object,
    order_from_json,
    report_message,
)
from vmd.bus.topology import EVENTS_EXCHANGE, ORDERS_EXCHANGE, task_routing_key
from vmd.model import JsonObject, Reply


class _Session:
    """What a `Delivery` asks of its connection: is it lost, which one is it."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.lost = False


class _Channel:
    """Records the acks and nacks a `Delivery` sends by its delivery tag."""

    def __init__(self, bus: FakeBus) -> None:
        self._bus = bus

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self._bus.acks.append(delivery_tag)

    async def basic_nack(self, delivery_tag: int, multiple: bool = False,
                         requeue: bool = True) -> None:
        (self._bus.requeued if requeue else self._bus.rejected).append(delivery_tag)


@dataclass
class Settled:
    """How the daemon settled one delivery (None: not yet)."""

    delivery: Delivery
    how: str | None = None  # "ack", "requeue", "reject", "dead"
    reason: str | None = None  # the `x-vmd-error` of a dead-lettered one


@dataclass
class FakeBus:
    """See the module docstring."""

    settings: BusSettings
    published: list[Outgoing] = field(default_factory=list)
    declared: list[Topology] = field(default_factory=list)
    reconnects: int = 0
    fail_publishes: int = 0
    acks: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    dead: list[tuple[Delivery, str]] = field(default_factory=list)
    _tags: dict[Delivery, int] = field(default_factory=dict)
    _session: _Session = field(default_factory=lambda: _Session(1))
    _stall: asyncio.Future[None] | None = None
    stalled: asyncio.Event = field(default_factory=asyncio.Event)

    # -- what the daemon calls ------------------------------------------------------------

    async def publish_many(self, messages: Sequence[Outgoing], *,
                           timeout: float | None = None) -> None:
        if self._stall is not None:
            self.stalled.set()
            await self._stall  # never confirmed: cancelled by the test's crash
        if self.fail_publishes > 0:
            self.fail_publishes -= 1
            raise NotConnected("fake bus: not connected (the test said so)")
        self.published.extend(messages)

    def stall(self) -> None:
        """From now on a publish is never confirmed (a broker that stopped answering): the
        window between a turn's write and its publish, held open. `stalled` is set once the
        pipeline is waiting in it, i.e. the turn is stored."""
        self._stall = asyncio.get_running_loop().create_future()
        self.stalled = asyncio.Event()

    async def declare(self, topology: Topology) -> None:
        self.declared.append(topology)

    async def _dead_letter_copy(self, delivery: Delivery, reason: str) -> None:
        # The copy to `vmd.dead` (vmd.bus.service); the Delivery acks the original after it.
        self.dead.append((delivery, reason))

    # -- deliveries ------------------------------------------------------------------------

    def delivery(self, queue: str, body: bytes, *, user_id: str | None = None,
                 reply_to: str | None = None, correlation_id: str | None = None,
                 message_id: str | None = None, headers: Mapping[str, Any] | None = None,
                 message_type: str | None = None, redelivered: bool = False,
                 routing_key: str = "", exchange: str = "") -> Delivery:
        """A delivery from `queue`, as the bus's consumer would hand it to a handler."""
        tag = len(self._tags) + 1
        props = spec.Basic.Properties(
            content_type="application/json", headers=dict(headers or {}),
            correlation_id=correlation_id, reply_to=reply_to, message_id=message_id,
            message_type=message_type, user_id=user_id)
        message = aiormq.abc.DeliveredMessage(
            delivery=spec.Basic.Deliver(consumer_tag="fake", delivery_tag=tag,
                                        redelivered=redelivered, exchange=exchange,
                                        routing_key=routing_key),
            header=ContentHeader(body_size=len(body), properties=props),
            body=body, channel=_Channel(self))  # type: ignore[arg-type]
        delivery = Delivery(message, queue=queue, session=self._session,  # type: ignore[arg-type]
                            on_settled=lambda _d: None, dead_letterer=self._dead_letter_copy)
        self._tags[delivery] = tag
        return delivery

    def request(self, user: str | None, method: str, path: str,
                data: JsonObject | None = None, *, reply_to: str | None = DIRECT_REPLY_TO,
                message_id: str | None = None, stream: bool = False,
                correlation_id: str | None = None, redelivered: bool = False,
                body: bytes | None = None) -> Delivery:
        """A request on `vmd.commands` (protocol.md §2) from broker user `user`."""
        raw = body if body is not None else json.dumps(
            {"method": method, "path": path, "data": data or {}}).encode()
        return self.delivery(
            COMMANDS_QUEUE, raw, user_id=user, reply_to=reply_to,
            correlation_id=correlation_id or uuid.uuid4().hex, message_id=message_id,
            headers={"stream": True} if stream else {}, redelivered=redelivered)

    def dead_lettered_task(self, order: Outgoing, reason: str = "expired") -> Delivery:
        """A task order the broker dead-lettered to the reports queue (its TTL ran out in
        the node's queue: `reason` "expired"), as the daemon receives it: the daemon's own
        `user_id`, the `x-death` reason in the headers."""
        return self.delivery(REPORTS_QUEUE, order.body, user_id=order.user_id,
                             message_type=order.type,
                             headers={"x-first-death-reason": reason})

    def report(self, report: AgentReport, user: str) -> Delivery:
        """An agent report on `vmd.agent.reports`, as `send_report` publishes it."""
        message = report_message(report, user_id=user)
        return self.delivery(REPORTS_QUEUE, message.body, user_id=user,
                             message_type=message.type, headers=message.headers)

    def settled(self, delivery: Delivery) -> Settled:
        """How `delivery` was settled so far."""
        tag = self._tags[delivery]
        dead = [reason for d, reason in self.dead if d is delivery]
        if dead:
            return Settled(delivery, "dead", dead[0])
        for how, tags in (("ack", self.acks), ("requeue", self.requeued),
                          ("reject", self.rejected)):
            if tag in tags:
                return Settled(delivery, how)
        return Settled(delivery)

    def lose_connection(self) -> None:
        """The broker connection is cut: every delivery handed out so far is stale (the
        broker would deliver it again); later ones come on a new connection."""
        self._session.lost = True
        self._session = _Session(self._session.generation + 1)
        self.reconnects += 1

    # -- what was published ----------------------------------------------------------------

    def take(self) -> list[Outgoing]:
        """Everything published since the last `take` (and forget it)."""
        out, self.published = self.published, []
        return out

    def events(self, prefix: str = "") -> list[tuple[str, JsonObject]]:
        return [(m.routing_key, decode_object(m.body, limit=None)) for m in self.published
                if m.exchange == EVENTS_EXCHANGE and m.routing_key.startswith(prefix)]

    def status_changes(self, vm_uuid: str) -> list[JsonObject]:
        return [body for key, body in self.events()
                if key.endswith(f".{vm_uuid}.status_change")]

    def tasks_done(self, task_id: str) -> list[JsonObject]:
        return [body for key, body in self.events() if key.endswith(f".{task_id}.done")]

    def orders(self, node: str | None = None) -> list[AgentOrder]:
        """The orders sent to agents (to `node`'s task queue), decoded, in order."""
        return [order_from_json(decode_object(m.body, limit=None)) for m in self.published
                if m.exchange == ORDERS_EXCHANGE
                and (node is None or m.routing_key == task_routing_key(node))]

    def replies(self, correlation_id: str) -> list[Reply]:
        """The replies published for `correlation_id`, in order (the `code` header checked
        against the body, as a client sees them)."""
        out = []
        for m in self.published:
            if m.correlation_id == correlation_id and m.exchange == "":
                body = decode_object(m.body, limit=None)
                assert m.headers.get("code") == body.get("code"), (m.headers, body)
                out.append(Reply(body["code"], {k: v for k, v in body.items() if k != "code"}))
        return out
