"""Following `vmd.events` live: a server-named queue, bound again on every (re)connect.

`EventFollower` is what `vmctl events` (and any Python program) uses to watch vmd's events
with the connecting user's own permissions: it declares an exclusive, auto-deleted,
server-named queue (`amq.gen-*`, which every principal may declare, protocol.md §1), binds
it to `vmd.events` with the routing keys asked for, and yields each event as it arrives.
The broker's topic permissions decide what a user may bind: a key it may not read is
refused (`ACCESS_REFUSED`), which is reported as `BindRefused` naming the key, not retried.

The connection is the bus's `Link`: a lost connection is rebuilt with backoff and the
queue declared and bound again (it died with the connection; events published meanwhile
are not seen: a subscriber that needs every event binds a durable named queue instead,
protocol.md §9). `notify` is told, in one line each, when the connection is lost and when
it is back, so a user knows there may be a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

import aio_pika.abc

from vmd.bus.codec import BodyError, decode_object
from vmd.bus.errors import BusError, BusFailed
from vmd.bus.link import Link, Session, describe
from vmd.bus.settings import BusSettings
from vmd.bus.topology import EVENTS_EXCHANGE
from vmd.model import JsonObject

Notify = Callable[[str], None]


class BindRefused(BusError):
    """The broker refused a binding: the user may not read those events."""


@dataclass(frozen=True, slots=True)
class EventMessage:
    """One event as received: its routing key and its decoded JSON body."""

    routing_key: str
    body: JsonObject


class EventFollower:
    """`async with EventFollower(settings, keys) as f: async for event in f: ...`"""

    def __init__(self, settings: BusSettings, bindings: Sequence[str], *,
                 notify: Notify | None = None) -> None:
        if not bindings:
            raise ValueError("at least one binding key")
        self.settings = settings
        self.bindings = tuple(bindings)
        self._notify = notify or (lambda _line: None)
        self._link = Link(settings, self._setup)
        self._events: asyncio.Queue[EventMessage] = asyncio.Queue()
        self._refused: str | None = None
        self._closing = False
        self.undecodable = 0

    async def __aenter__(self) -> EventFollower:
        try:
            await self._link.open()
        except BusFailed:
            raise BindRefused(self._refused or "the broker refused the binding") from None
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._closing = True
        await self._link.close()

    @property
    def reconnects(self) -> int:
        return self._link.reconnects

    async def _setup(self, session: Session) -> None:
        if session.generation > 1:
            self._notify("connection to the broker back; following again "
                         "(events published meanwhile are not shown)")
        session.on_lost(self._lost)
        channel = await session.open_channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for key in self.bindings:
            try:
                await queue.bind(EVENTS_EXCHANGE, key)
            except Exception as exc:
                self._refused = f"the broker refused binding {key!r}: {describe(exc)}"
                raise
        await queue.consume(self._on_message, no_ack=True)

    def _lost(self, _session: Session) -> None:
        if not (self._closing or self._refused is not None or self._link.failure is not None):
            self._notify("connection to the broker lost; reconnecting")

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        try:
            body = decode_object(message.body, limit=None)
        except BodyError:
            self.undecodable += 1
            return
        self._events.put_nowait(EventMessage(message.routing_key or "", body))

    def __aiter__(self) -> EventFollower:
        return self

    async def __anext__(self) -> EventMessage:
        if not self._events.empty():
            return self._events.get_nowait()
        get = asyncio.ensure_future(self._events.get())
        closed = asyncio.ensure_future(self._link.wait_closed())
        try:
            await asyncio.wait((get, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if closed.done() and not closed.cancelled():
                closed.exception()  # retrieved: looked at below
            closed.cancel()
            if not get.done():
                get.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            if get.done() and not get.cancelled():
                return get.result()
        if self._refused is not None:
            raise BindRefused(self._refused)
        if closed.done() and not closed.cancelled() and closed.exception() is not None:
            raise BusFailed(describe(closed.exception()))
        raise StopAsyncIteration
