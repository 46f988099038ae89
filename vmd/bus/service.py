"""`Bus`: what the daemon and the node agent hold: topology, consumers, publishing, shutdown.

One object per process and broker user. It owns a `Link` (the connection, rebuilt after
any loss) and, on every (re)connect, runs the same setup in the same order:

1. open the publish channel (confirms on) and declare every registered `Topology` on it;
2. re-register every consumer, each on its own channel with its own prefetch;
3. only then hand the connection to publishers.

Every publish waits at most `publish_timeout` for a connection and its confirms, then
raises a `PublishFailed` subclass: nothing hangs while the broker is away.

Shutdown order (`close`, docs/architecture.md rule 4): stop consuming and drain the consumers (the
connection stays up so handlers can still publish replies and events and ack), then close
the connection, last.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import MappingProxyType, TracebackType

import structlog
from structlog.typing import FilteringBoundLogger

from vmd.bus.consumer import Consumer, Handler
from vmd.bus.delivery import Delivery, Fence
from vmd.bus.errors import BusError, NotConnected, PublishTimeout
from vmd.bus.link import REFUSALS, TRANSIENT, Link, Session, describe
from vmd.bus.publish import Outgoing, publish_batch
from vmd.bus.settings import BusSettings
from vmd.bus.topology import DEAD_QUEUE, DEFAULT_EXCHANGE, ERROR_HEADER, Topology, declare

log: FilteringBoundLogger = structlog.get_logger(logger_name=__name__)  # see vmd.bus.link

# Headers added to a dead-lettered copy (user_id cannot be copied as a property: the broker
# checks it against the publishing connection's user).
ORIGINAL_USER_HEADER = "x-vmd-user-id"
ORIGINAL_EXCHANGE_HEADER = "x-vmd-exchange"
ORIGINAL_ROUTING_KEY_HEADER = "x-vmd-routing-key"


class Bus:
    """A named, self-healing connection with declared topology, consumers and publishers."""

    def __init__(self, settings: BusSettings, *, topology: Topology | None = None,
                 fence: Fence | None = None) -> None:
        """`fence`, when given, runs before every publish and every ack, and refuses them
        by raising (the daemon's leadership, docs/ha.md: a lost lease publishes and acks
        nothing)."""
        self.settings = settings
        self._fence = fence
        self._topologies: list[Topology] = [topology] if topology is not None else []
        self._consumers: list[Consumer] = []
        self._link = Link(settings, self._setup)
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (bounded retries), declare, start registered consumers."""
        self._started = True
        await self._link.open()
        for consumer in self._consumers:
            consumer.start()

    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def stop_consuming(self) -> int:
        """basic.cancel every consumer and requeue their prefetched, unstarted deliveries
        (shutdown step 1); deliveries in hand stay the owner's to settle. Returns how many
        were requeued."""
        requeued = await asyncio.gather(*(c.cancel() for c in self._consumers))
        return sum(requeued)

    async def drain(self, timeout: float | None = None) -> int:
        """Stop every consumer (see `Consumer.stop`); return deliveries left in hand."""
        timeout = self.settings.drain_timeout if timeout is None else timeout
        left = await asyncio.gather(*(c.stop(timeout) for c in self._consumers))
        return sum(left)

    async def close(self, *, drain_timeout: float | None = None) -> None:
        """Drain the consumers, then close the connection (last)."""
        await self.drain(drain_timeout)
        await self._link.close()

    async def wait_closed(self) -> None:
        """Return once closed; raise `BusFailed` if the bus stopped on its own (a bug or a
        refused declaration). A runner waits on this next to its other tasks."""
        await self._link.wait_closed()

    @property
    def connected(self) -> bool:
        return self._link.session is not None

    @property
    def reconnects(self) -> int:
        """How many times the connection was re-established after a loss (a metric)."""
        return self._link.reconnects

    @property
    def generation(self) -> int:
        """Which connection is current (1 = the first); 0 while disconnected."""
        session = self._link.session
        return 0 if session is None else session.generation

    @property
    def consumers(self) -> tuple[Consumer, ...]:
        return tuple(self._consumers)

    # -- topology and consumers ------------------------------------------------------------

    async def declare(self, topology: Topology) -> None:
        """Declare more objects now (if connected) and on every reconnect from now on.
        Declaring the same topology again (a node seen again) does not add it twice."""
        new = topology not in self._topologies
        if new:
            self._topologies.append(topology)
        session = self._link.session
        if session is None:
            return
        try:
            await declare(session.publish_channel, topology)
        except REFUSALS as exc:
            # A conflicting declaration is the caller's bug. The broker closed the channel, so
            # the bus reconnects, without this topology (it would fail every setup).
            if new:
                self._topologies.remove(topology)
            raise BusError(f"the broker refused the declaration: {describe(exc)}") from None
        except TRANSIENT as exc:
            log.info("declaration deferred to the reconnect", error=describe(exc))

    async def consume(
        self, queue: str, handler: Handler, *, prefetch: int | None = None
    ) -> Consumer:
        """Consume `queue` now and after every reconnect; `handler` runs per delivery in
        arrival order and must see to it that each delivery is settled eventually.

        Before `start()` it only registers the consumer. After, it returns once the broker
        has the consumer (waiting for a connection if need be). A queue that does not exist
        is the caller's bug: `BusError` (and the broker closed a channel: the bus reconnects).
        """
        consumer = Consumer(
            queue=queue,
            handler=handler,
            prefetch=self.settings.prefetch if prefetch is None else prefetch,
            dead_letterer=self._dead_letter_copy,
            on_crash=self._link.fail,
            fence=self._fence,
        )
        if not self._started:
            self._consumers.append(consumer)
            return consumer
        consumer.start()
        while True:
            session = await self._link.wait_session()
            try:
                await consumer.attach(session)
            except REFUSALS as exc:
                await consumer.stop(0)
                raise BusError(f"cannot consume {queue!r}: {describe(exc)}") from None
            except TRANSIENT as exc:
                log.info("consume failed; retrying on the next connection", queue=queue,
                         error=describe(exc))
                continue
            # Registered only once attached to a live session: a setup that ran meanwhile for
            # a newer session did not see it, hence the check (and another attach) here.
            if not session.lost:
                self._consumers.append(consumer)
                return consumer

    async def _setup(self, session: Session) -> None:
        session.publish_channel = await session.open_channel()
        for topology in self._topologies:
            await declare(session.publish_channel, topology)
        for consumer in self._consumers:
            await consumer.attach(session)

    # -- publishing ------------------------------------------------------------------------

    async def publish_many(
        self, messages: Sequence[Outgoing], *, timeout: float | None = None
    ) -> None:
        """Publish in order with confirms, all in flight at once; raise `PublishFailed`."""
        timeout = self.settings.publish_timeout if timeout is None else timeout
        connected = False
        try:
            async with asyncio.timeout(timeout):
                session = await self._link.wait_session()
                connected = True
                if self._fence is not None:
                    self._fence()  # after any wait for a connection, right before sending
                await publish_batch(session, messages)
        except TimeoutError:
            if not connected:
                raise NotConnected(
                    f"not connected to the broker ({self.settings.redacted_url}) "
                    f"within {timeout:g}s"
                ) from None
            raise PublishTimeout(f"the broker did not confirm within {timeout:g}s") from None

    async def publish(self, message: Outgoing, *, timeout: float | None = None) -> None:
        await self.publish_many((message,), timeout=timeout)

    async def _dead_letter_copy(self, delivery: Delivery, reason: str) -> None:
        headers = dict(delivery.headers)
        headers[ERROR_HEADER] = reason
        if delivery.user_id is not None:
            headers[ORIGINAL_USER_HEADER] = delivery.user_id
        headers[ORIGINAL_EXCHANGE_HEADER] = delivery.exchange
        headers[ORIGINAL_ROUTING_KEY_HEADER] = delivery.routing_key
        await self.publish(
            Outgoing(
                DEFAULT_EXCHANGE,
                DEAD_QUEUE,
                delivery.body,
                headers=MappingProxyType(headers),
                content_type=delivery.content_type,
                correlation_id=delivery.correlation_id,
                message_id=delivery.message_id,
                reply_to=delivery.reply_to,
                type=delivery.type,
            )
        )
