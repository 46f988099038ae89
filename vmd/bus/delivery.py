"""A received message, as the rest of vmd sees it: bytes, plain properties, and its settlement.

Higher layers never see aio-pika or aiormq types. A `Delivery` carries the body and the
properties the protocol uses, and the three ways to finish with it (docs/architecture.md rule 5, ack
after the effect): `ack()`, `reject(requeue)` and `dead_letter(reason)`.

A delivery belongs to one connection (session). If that connection is lost before the
delivery is settled, the broker requeues it and will deliver it again, with `redelivered`
set, on the next connection: the old delivery is then `stale`, settling it does nothing on
the wire (an ack with an old delivery tag on a new channel would close that channel), and
the settle methods return False so the caller can log it. Settling twice is a bug in the
caller and raises.

`ack_all` acks many at once (the daemon's commit pipeline, once per turn): per channel, one
`basic.ack(multiple=True)` for those it may cover, the others one by one. A multiple ack of
tag T settles every unsettled delivery of the channel up to T, so it may only name a T with
nothing of the channel's at or below it still open: each channel's `TagLedger` (one per
consumer and connection: vmd.bus.consumer) knows every tag it delivered and which are
settled *on the wire* (a settlement counts once its frame was written, so an ack or nack
still in flight, a delivery held back for the next instance, one being dead-lettered, or one
still in the consumer's buffer holds every tag above it to single acks).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import aiormq.abc
import aiormq.exceptions as amqp_errors

from vmd.bus.errors import PublishFailed
from vmd.bus.link import Session

SettleHook = Callable[["Delivery"], None]
DeadLetterer = Callable[["Delivery", str], Awaitable[None]]
# Run before every publish and ack of a bus; it raises (or exits) to refuse them.
Fence = Callable[[], None]

_GONE = (amqp_errors.ChannelInvalidStateError, amqp_errors.AMQPError, ConnectionError)


class TagLedger:
    """The delivery tags of one channel: the highest seen and those not settled on the wire.

    The broker numbers a channel's deliveries 1, 2, 3, ... and the consumer sees them in
    that order; a tag out of that sequence (nothing here makes one) turns multiple acks off
    for the channel, so the rule cannot be wrong silently."""

    __slots__ = ("_open", "_seen", "_sequential")

    def __init__(self) -> None:
        self._open: set[int] = set()
        self._seen = 0
        self._sequential = True

    def received(self, tag: int) -> None:
        if tag != self._seen + 1:
            self._sequential = False
        self._seen = max(self._seen, tag)
        self._open.add(tag)

    def done(self, tag: int) -> None:
        """The settlement of `tag` was written (or its channel is gone)."""
        self._open.discard(tag)

    def cover(self, tags: Collection[int]) -> int:
        """The highest of `tags` one multiple ack may name (every open tag at or below it is
        among `tags`), or 0 when fewer than two of them would go in it."""
        if not self._sequential or len(tags) < 2:
            return 0
        others = self._open.difference(tags)
        floor = min(others) - 1 if others else self._seen
        under = [t for t in tags if t <= floor]
        return max(under) if len(under) >= 2 else 0


class Delivery:
    """One message taken from a queue with manual acknowledgement."""

    __slots__ = (
        "_channel",
        "_dead_letterer",
        "_fence",
        "_ledger",
        "_on_settled",
        "_session",
        "_settled",
        "_tag",
        "app_id",
        "body",
        "content_type",
        "correlation_id",
        "exchange",
        "expiration",
        "headers",
        "message_id",
        "queue",
        "redelivered",
        "reply_to",
        "routing_key",
        "type",
        "user_id",
    )

    def __init__(
        self,
        message: aiormq.abc.DeliveredMessage,
        *,
        queue: str,
        session: Session,
        on_settled: SettleHook,
        dead_letterer: DeadLetterer,
        fence: Fence | None = None,
        ledger: TagLedger | None = None,
    ) -> None:
        props = message.header.properties
        self.body: bytes = message.body
        self.queue = queue
        self.user_id: str | None = props.user_id
        self.message_id: str | None = props.message_id
        self.correlation_id: str | None = props.correlation_id
        self.reply_to: str | None = props.reply_to
        self.content_type: str | None = props.content_type
        self.type: str | None = props.message_type
        self.app_id: str | None = props.app_id
        self.expiration: str | None = props.expiration
        self.headers: Mapping[str, Any] = MappingProxyType(dict(props.headers or {}))
        self.redelivered = bool(message.redelivered)
        self.routing_key: str = message.routing_key or ""
        self.exchange: str = message.exchange or ""
        self._tag = message.delivery_tag or 0
        self._channel = message.channel
        self._session = session
        self._on_settled = on_settled
        self._dead_letterer = dead_letterer
        self._fence = fence
        self._settled = False
        self._ledger = ledger
        if ledger is not None:
            ledger.received(self._tag)

    def __repr__(self) -> str:
        return (
            f"<Delivery {self.queue}#{self._tag} gen={self._session.generation} "
            f"message_id={self.message_id!r} redelivered={self.redelivered}>"
        )

    @property
    def settled(self) -> bool:
        return self._settled

    @property
    def stale(self) -> bool:
        """True once the connection it came on is lost: the broker will deliver it again."""
        return self._session.lost

    @property
    def generation(self) -> int:
        """Which connection (1 = the first) it came on."""
        return self._session.generation

    def header(self, name: str, default: Any = None) -> Any:
        return self.headers.get(name, default)

    def _mark_settled(self) -> None:
        if self._settled:
            raise RuntimeError(f"{self!r} settled twice")
        self._settled = True
        self._on_settled(self)

    async def ack(self) -> bool:
        """Done with it. False if stale (it will come again). The bus's fence runs first
        (vmd.bus.service.Bus: a daemon that lost its lease acks nothing)."""
        if self._fence is not None:
            self._fence()
        self._mark_settled()
        if self.stale:
            return False
        try:
            await self._channel.basic_ack(self._tag)
        except _GONE:
            return False
        finally:
            self._written()
        return True

    def _written(self) -> None:
        if self._ledger is not None:
            self._ledger.done(self._tag)

    async def reject(self, requeue: bool) -> bool:
        """Give it back (`requeue`) or drop it (to the queue's dead-letter exchange, if any)."""
        self._mark_settled()
        if self.stale:
            return False
        try:
            await self._channel.basic_nack(self._tag, requeue=requeue)
        except _GONE:
            return False
        finally:
            self._written()
        return True

    async def dead_letter(self, reason: str) -> None:
        """Publish a copy to `vmd.dead` with header `x-vmd-error: reason`, then ack.

        The copy is confirmed before the ack, so a crash in between leaves a duplicate in
        `vmd.dead`, never a loss. Raises `PublishFailed` (then nothing is settled).
        """
        if self._settled:
            raise RuntimeError(f"{self!r} settled twice")
        await self._dead_letterer(self, reason)
        await self.ack()

    async def dead_letter_or_requeue(self, reason: str) -> PublishFailed | None:
        """`dead_letter(reason)`, or, when the broker does not take the copy, back to the
        queue: its redelivery fails again, and the daemon's delivery limit ends it
        (docs/reliability.md). Returns the failure, None when dead-lettered."""
        try:
            await self.dead_letter(reason)
        except PublishFailed as exc:
            if not self._settled:
                await self.reject(requeue=True)
            return exc
        return None


async def ack_all(deliveries: Iterable[Delivery]) -> None:
    """Ack every delivery (module docstring): per channel one multiple ack for those its
    ledger lets one cover, the rest one by one, all at once. Stale ones are settled and
    left (they come again), as `Delivery.ack` does; the bus's fence runs first."""
    channels: dict[int, list[Delivery]] = {}
    alone: list[Delivery] = []
    for d in deliveries:
        if d._ledger is None or d.stale:
            alone.append(d)
        else:
            channels.setdefault(id(d._ledger), []).append(d)
    sends: list[Awaitable[object]] = [d.ack() for d in alone]
    for group in channels.values():
        ledger = group[0]._ledger
        assert ledger is not None
        top = ledger.cover({d._tag for d in group})
        covered = [d for d in group if d._tag <= top] if top else []
        sends += [d.ack() for d in group if not top or d._tag > top]
        if covered:
            sends.append(_ack_through(covered, top))
    await asyncio.gather(*sends)


async def _ack_through(covered: list[Delivery], top: int) -> None:
    first = covered[0]
    if first._fence is not None:
        first._fence()
    for d in covered:
        d._mark_settled()
    try:
        await first._channel.basic_ack(top, multiple=True)
    except _GONE:
        pass  # the connection went: the broker delivers them again
    finally:
        for d in covered:
            d._written()
