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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
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


class Delivery:
    """One message taken from a queue with manual acknowledgement."""

    __slots__ = (
        "_channel",
        "_dead_letterer",
        "_fence",
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
        return True

    async def reject(self, requeue: bool) -> bool:
        """Give it back (`requeue`) or drop it (to the queue's dead-letter exchange, if any)."""
        self._mark_settled()
        if self.stale:
            return False
        try:
            await self._channel.basic_nack(self._tag, requeue=requeue)
        except _GONE:
            return False
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
