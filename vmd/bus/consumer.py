"""Consuming one queue: the prefetch window is the backpressure, handlers run in arrival order.

aiormq runs a new task per delivery. Here that task only appends the delivery to a local
buffer; one dispatcher task per consumer takes them out in arrival order and awaits the
handler for each, one at a time, yielding to the event loop between two (so a buffer full
of deliveries never holds the loop as one block: other consumers, timers and heartbeats
run in between; the order of one queue's deliveries is unchanged). A handler that leaves
work for later (the daemon's intake decides in one synchronous step and leaves the write,
the publish and the ack to its commit pipeline; the agent runs vmadm as a task) returns
at once: the delivery stays *in hand* until someone settles it, and the broker sends no
more than `prefetch` unsettled deliveries, so the prefetch is the only bound (docs/architecture.md
rule 6: no second semaphore).

Shutdown (`stop`, docs/architecture.md rule 4, as aio-pika's `QueueIterator.close`): basic.cancel so
nothing new arrives and requeue (nack) what was prefetched but not handed to the handler yet
(`cancel`); wait up to a deadline for the handler call and the deliveries in hand to be
settled (`wait_settled`); then give up on the rest (the broker requeues them when the
connection closes, last). The steps are separate methods too, for an owner (the daemon,
docs/shutdown.md) that does its own work between them.

A handler that raises is a bug: the consumer stops taking deliveries and the bus fails
(`Bus.wait_closed()` raises), so the process exits loudly. If the delivery it failed on was
already a redelivery, it is first dead-lettered, so one poison message cannot crash-loop the
service (aio-pika's `process(reject_on_redelivered=True)` does the same).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from functools import partial

import aiormq.abc
import structlog
from structlog.typing import FilteringBoundLogger

from vmd.bus.delivery import DeadLetterer, Delivery, Fence, TagLedger
from vmd.bus.errors import BusError
from vmd.bus.link import CLOSE_ERRORS, Session, describe

log: FilteringBoundLogger = structlog.get_logger(logger_name=__name__)  # see vmd.bus.link

Handler = Callable[[Delivery], Awaitable[None]]


class Consumer:
    """One queue's consumer; survives reconnects (re-attached by the bus's setup)."""

    def __init__(
        self,
        *,
        queue: str,
        handler: Handler,
        prefetch: int,
        dead_letterer: DeadLetterer,
        on_crash: Callable[[BaseException], None],
        fence: Fence | None = None,
    ) -> None:
        self.queue = queue
        self._fence = fence
        self.prefetch = prefetch
        self._handler = handler
        self._dead_letterer = dead_letterer
        self._on_crash = on_crash
        self._buffer: asyncio.Queue[Delivery] = asyncio.Queue()
        self._in_hand: set[Delivery] = set()
        self._handling = False
        self._stopping = False
        self._stopped = False
        self._cancelled = False
        self._changed = asyncio.Event()
        self._attached: tuple[Session, aiormq.abc.AbstractChannel, str] | None = None
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0

    @property
    def in_hand(self) -> int:
        """Deliveries handed to the handler and not settled yet (on the live connection)."""
        return sum(1 for d in self._in_hand if not d.settled and not d.stale)

    @property
    def buffered(self) -> int:
        return self._buffer.qsize()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._dispatch(), name=f"bus-consumer:{self.queue}")

    async def attach(self, session: Session) -> None:
        """Consume the queue on this session (once per session; called by the bus's setup)."""
        if self._stopping or (self._attached is not None and self._attached[0] is session):
            return
        channel = await session.open_channel(prefetch=self.prefetch)
        underlay = await channel.get_underlay_channel()
        # One channel per consumer and connection, so its ledger sees every tag of it
        # (vmd.bus.delivery.ack_all: which of them one multiple ack may cover).
        ok = await underlay.basic_consume(
            self.queue, partial(self._on_message, session, TagLedger()), no_ack=False
        )
        if ok.consumer_tag is None:
            raise RuntimeError("broker returned no consumer tag")
        self._attached = (session, underlay, ok.consumer_tag)
        session.on_lost(self._on_session_lost)

    def _on_session_lost(self, _session: Session) -> None:
        # Deliveries of the lost session are back in the queue: no longer ours to wait for.
        self._in_hand = {d for d in self._in_hand if not d.stale}
        self._changed.set()

    async def _on_message(self, session: Session, ledger: TagLedger,
                          message: aiormq.abc.DeliveredMessage) -> None:
        delivery = Delivery(
            message,
            queue=self.queue,
            session=session,
            on_settled=self._settled,
            dead_letterer=self._dead_letterer,
            fence=self._fence,
            ledger=ledger,
        )
        if self._stopping:
            # Arrived after stop() drained the buffer (sent before our basic.cancel).
            await delivery.reject(requeue=True)
            return
        # No await before this put: deliveries enter the buffer in arrival order.
        self._buffer.put_nowait(delivery)

    def _settled(self, delivery: Delivery) -> None:
        self._in_hand.discard(delivery)
        self._changed.set()

    async def _dispatch(self) -> None:
        while True:
            if not self._buffer.empty():
                # `get` of a non-empty queue does not suspend: a full buffer was handled
                # back to back, holding the loop as long as all its handlers together
                # (issue 12). One turn of the loop between two deliveries lets heartbeats,
                # timers and the other consumers in; the commit pipeline still batches
                # what was decided meanwhile (docs/performance.md: no measurable cost).
                await asyncio.sleep(0)
            delivery = await self._buffer.get()
            if delivery.stale or delivery.settled:
                continue
            if self._stopping:
                await delivery.reject(requeue=True)
                continue
            self._in_hand.add(delivery)
            self.delivered += 1
            self._handling = True
            try:
                await self._handler(delivery)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._crashed(delivery, exc)
                return
            finally:
                self._handling = False
                self._changed.set()

    async def _crashed(self, delivery: Delivery, exc: Exception) -> None:
        log.exception("handler failed", queue=self.queue, delivery=repr(delivery))
        if delivery.redelivered and not delivery.settled and not delivery.stale:
            reason = f"handler failed twice: {type(exc).__name__}: {exc}"
            try:
                await delivery.dead_letter(reason[:200])
            except BusError as dl_exc:
                log.error("dead-lettering failed", queue=self.queue, delivery=repr(delivery),
                          error=str(dl_exc))
        self._stopping = True
        self._on_crash(exc)

    def _busy(self) -> bool:
        return self._handling or self.in_hand > 0

    async def cancel(self, timeout: float = 5.0) -> int:
        """Stop consuming: basic.cancel, then requeue what was prefetched but not handed to
        the handler. Returns how many were requeued. Deliveries in hand are untouched."""
        if self._cancelled:
            return 0
        self._cancelled = self._stopping = True
        attached = self._attached
        if attached is not None and not attached[0].lost:
            _session, channel, tag = attached
            try:
                async with asyncio.timeout(timeout):
                    await channel.basic_cancel(tag)
            except CLOSE_ERRORS as exc:
                # The connection is going: the broker requeues everything unacked anyway.
                log.debug("basic.cancel failed", queue=self.queue, error=describe(exc))
        # Deliveries read before the CancelOk have their tasks queued ahead of us: let them run.
        await asyncio.sleep(0)
        requeued = 0
        while not self._buffer.empty():
            delivery = self._buffer.get_nowait()
            if not delivery.stale and not delivery.settled:
                requeued += await delivery.reject(requeue=True)
        return requeued

    async def wait_settled(self, timeout: float) -> int:
        """Wait until the handler call in progress returned and every delivery in hand was
        settled (or went stale), up to `timeout`; return how many are still in hand."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._busy():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
        return self.in_hand

    async def stop(self, timeout: float) -> int:
        """`cancel`, `wait_settled(timeout)`, then end the dispatcher (a handler call still
        running at the deadline is cancelled). Returns how many deliveries were left in hand;
        the broker requeues them when the connection closes. A second call returns at once."""
        if self._stopped:
            return self.in_hand
        self._stopped = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self.cancel(timeout)
        left = await self.wait_settled(max(0.0, deadline - loop.time()))
        if left:
            log.warning("deliveries still in hand at the deadline", queue=self.queue,
                        deliveries=left)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return left
