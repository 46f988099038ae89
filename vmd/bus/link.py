"""The connection to the broker: connect with retry, lose it as a whole, rebuild it as a whole.

Why not `aio_pika.connect_robust`: its restore holds channels weakly and has a long history of
consumers that are not resumed (aio-pika #231, #540), and publishing through it blocks while it
reconnects. Here a plain `aio_pika.connect` is wrapped in our own loop, which is easier to
reason about:

- A `Session` is one AMQP connection and the channels opened on it. Anything wrong with any
  part of it (the connection closes, the broker closes a channel, the broker cancels a
  consumer because its queue was deleted) marks the whole session *lost*; it is then closed,
  and every delivery taken through it is *stale* (the broker requeues it by itself).
- The `Link` supervisor opens a new session with a backoff and runs the owner's `setup` on
  it before anything else may use it: setup re-declares the topology and re-registers the
  consumers explicitly, every time. Only after setup is the session handed to publishers.
- The first connect is bounded (`connect_attempts`: the broker may still be booting; under
  systemd it is unbounded by default, each failed attempt told to `on_connect_retry`); later
  reconnects retry forever, counted in `reconnects` (a metric), the first of them after a
  random `reconnect_spread` pause. Every delay is capped (`retry_delay_max`) and jittered.
- Each failed attempt is logged once, here (aiormq's own line is demoted, vmd.obs.logging).
- A declaration the broker refuses (a queue declared elsewhere with other arguments, no
  permission) is not transient: the link stops and `wait_closed()` raises `BusFailed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable

import aio_pika
import aiormq.exceptions as amqp_errors
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq import spec
from structlog.typing import FilteringBoundLogger

from vmd.bus.errors import BusClosed, BusFailed, ConnectFailed
from vmd.bus.reasons import connect_reason, refusal_detail
from vmd.bus.settings import BusSettings

# structlog key-values like the rest of vmd; `logger_name` is what vmd.obs.logging shows as
# `logger` (its get_logger is not importable here: vmd.bus and vmd.obs are siblings).
log: FilteringBoundLogger = structlog.get_logger(logger_name=__name__)

# Errors the broker raises for a request it will refuse again if asked again.
REFUSALS: tuple[type[BaseException], ...] = (
    amqp_errors.ChannelAccessRefused,
    amqp_errors.ChannelNotFoundEntity,
    amqp_errors.ChannelPreconditionFailed,
    amqp_errors.ChannelLockedResource,
)
# Errors of the first connect that retrying cannot fix (bad credentials, unknown vhost).
_LOGIN_ERRORS: tuple[type[BaseException], ...] = (
    amqp_errors.ProbableAuthenticationError,
    amqp_errors.AuthenticationError,
    amqp_errors.ConnectionNotAllowed,
    amqp_errors.ProtocolSyntaxError,
)
# Everything that means "the connection is (or went) away": retry.
TRANSIENT: tuple[type[BaseException], ...] = (
    amqp_errors.AMQPError,
    amqp_errors.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    TimeoutError,
)
# What closing or cancelling on a dying connection may raise: logged, never propagated.
CLOSE_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT, *REFUSALS)


def describe(exc: BaseException | None) -> str:
    """One line for an exception from aio-pika/aiormq (their reprs are long)."""
    if exc is None:
        return "closed"
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class SessionLost(Exception):
    """Why a session was declared lost when no exception came with it."""


class Session:
    """One AMQP connection and its channels: usable until `lost`, then discarded whole."""

    def __init__(self, connection: AbstractConnection, generation: int, timeout: float) -> None:
        self.connection = connection
        self.generation = generation
        self._timeout = timeout
        self._lost: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        self._lost_callbacks: list[Callable[[Session], None]] = []
        self._closing = False
        self._channels: list[AbstractChannel] = []
        self._publish_channel: AbstractChannel | None = None
        connection.close_callbacks.add(self._on_connection_closed)

    @property
    def lost(self) -> bool:
        if not self._lost.done() and not self._closing:
            # aio-pika tells close callbacks in tasks of their own, after the failing call
            # has already raised: look at the objects too, so nobody reuses a dead channel.
            if self.connection.is_closed:
                self.mark_lost(SessionLost("connection closed"))
            elif any(channel.is_closed for channel in self._channels):
                self.mark_lost(SessionLost("a channel was closed by the broker"))
        return self._lost.done()

    def mark_lost(self, reason: BaseException) -> None:
        if self._lost.done():
            return
        self._lost.set_result(reason)
        for callback in self._lost_callbacks:
            callback(self)

    def on_lost(self, callback: Callable[[Session], None]) -> None:
        """Call `callback(session)` once the session is lost (at once if it already is)."""
        if self.lost:
            callback(self)
        else:
            self._lost_callbacks.append(callback)

    async def wait_lost(self) -> BaseException:
        return await asyncio.shield(self._lost)

    def _on_connection_closed(self, _sender: object, exc: BaseException | None) -> None:
        self.mark_lost(exc or SessionLost("connection closed"))

    def _on_channel_closed(self, _sender: object, exc: BaseException | None) -> None:
        # Our own close of the whole session closes channels too: not a loss to report.
        if not self._closing:
            self.mark_lost(exc or SessionLost("channel closed"))

    def _on_consumer_cancelled(self, frame: spec.Basic.Cancel) -> None:
        self.mark_lost(SessionLost(f"the broker cancelled consumer {frame.consumer_tag}"))

    async def open_channel(self, *, prefetch: int | None = None) -> AbstractChannel:
        """A channel with publisher confirms; returns of mandatory messages raise."""
        channel = self.connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.initialize(timeout=self._timeout)
        self._channels.append(channel)
        channel.close_callbacks.add(self._on_channel_closed)
        underlay = await channel.get_underlay_channel()
        underlay.on_consumer_cancel_callbacks.add(self._on_consumer_cancelled)
        if prefetch is not None:
            await channel.set_qos(prefetch_count=prefetch, timeout=self._timeout)
        return channel

    @property
    def publish_channel(self) -> AbstractChannel:
        if self._publish_channel is None:
            raise RuntimeError("session has no publish channel (setup did not open one)")
        return self._publish_channel

    @publish_channel.setter
    def publish_channel(self, channel: AbstractChannel) -> None:
        self._publish_channel = channel

    async def close(self) -> None:
        """Close the connection (which closes its channels). Never raises."""
        self._closing = True
        self.mark_lost(SessionLost("closed by us"))
        try:
            async with asyncio.timeout(self._timeout):
                await self.connection.close()
        except CLOSE_ERRORS as exc:
            log.debug("connection close failed", error=describe(exc))


Setup = Callable[[Session], Awaitable[None]]


class Link:
    """Keeps one usable `Session` at a time, rebuilding it after any loss."""

    def __init__(self, settings: BusSettings, setup: Setup) -> None:
        self._settings = settings
        self._setup = setup
        self._session: Session | None = None
        self._ready = asyncio.Event()
        self._finished = asyncio.Event()
        self._failure: BaseException | None = None
        self._closed = False
        self._generation = 0
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0

    @property
    def session(self) -> Session | None:
        """The session publishers may use now, or None while (re)connecting."""
        session = self._session
        return session if session is not None and not session.lost else None

    @property
    def failure(self) -> BaseException | None:
        return self._failure

    async def open(self) -> None:
        """First connect: `connect_attempts` tries, then `ConnectFailed`."""
        if self._task is not None or self._closed:
            raise RuntimeError("a link is opened once")
        attempts = self._settings.connect_attempts
        delays = self._delays()
        attempt = 0
        while True:
            attempt += 1
            try:
                session = await self._open_session()
                break
            except _LOGIN_ERRORS as exc:
                refusal, reason = connect_reason(exc, self._settings.connect_timeout)
                raise ConnectFailed(
                    f"the broker refused {self._settings.redacted_url} (user "
                    f"{self._settings.user!r}, vhost {self._settings.vhost!r}): "
                    f"{refusal_detail(exc, reason)}",
                    refusal=refusal, reason=reason,
                ) from None
            except REFUSALS as exc:
                raise BusFailed(f"the broker refused the setup: {describe(exc)}") from None
            except TRANSIENT as exc:
                if attempts is not None and attempt >= attempts:
                    refusal, reason = connect_reason(exc, self._settings.connect_timeout)
                    raise ConnectFailed(
                        f"cannot connect to {self._settings.redacted_url} after {attempt} "
                        f"attempt{'s' if attempt > 1 else ''}: {describe(exc)}",
                        refusal=refusal, reason=reason,
                    ) from None
                delay = next(delays)
                log.warning("broker connect failed; retrying", url=self._settings.redacted_url,
                            attempt=attempt, error=describe(exc), delay=round(delay, 2))
                if self._settings.on_connect_retry is not None:
                    self._settings.on_connect_retry(attempt, describe(exc), delay)
                await asyncio.sleep(delay)
        self._install(session)
        self._task = asyncio.create_task(
            self._supervise(session), name=f"bus-link:{self._settings.connection_name}"
        )

    async def wait_session(self) -> Session:
        """The current session, waiting while the link reconnects. Callers bound the wait."""
        while True:
            if self._failure is not None:
                raise BusFailed(f"the bus stopped: {describe(self._failure)}")
            if self._closed:
                raise BusClosed("the bus is closed")
            session = self.session
            if session is not None:
                return session
            ready = asyncio.ensure_future(self._ready.wait())
            finished = asyncio.ensure_future(self._finished.wait())
            try:
                await asyncio.wait((ready, finished), return_when=asyncio.FIRST_COMPLETED)
            finally:
                ready.cancel()
                finished.cancel()

    def fail(self, exc: BaseException) -> None:
        """Stop for good (a consumer's handler crashed, or a setup was refused)."""
        if self._failure is None and not self._closed:
            self._failure = exc
        self._finished.set()
        self._ready.clear()
        if self._session is not None:
            self._session.mark_lost(SessionLost(f"bus failed: {describe(exc)}"))
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    async def wait_closed(self) -> None:
        """Return when the link is closed by its owner; raise `BusFailed` if it failed."""
        await self._finished.wait()
        if self._failure is not None:
            raise BusFailed(f"the bus stopped: {describe(self._failure)}") from self._failure

    async def close(self) -> None:
        """Stop reconnecting and close the connection (the owner drained consumers first)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        session, self._session = self._session, None
        self._ready.clear()
        if session is not None:
            await session.close()
        self._finished.set()

    def _install(self, session: Session) -> None:
        self._session = session
        self._ready.set()
        session.on_lost(lambda _: self._ready.clear())

    def _delays(self) -> _Backoff:
        return _Backoff(self._settings.retry_delay, self._settings.retry_delay_max)

    async def _open_session(self) -> Session:
        self._generation += 1
        settings = self._settings
        connection = await aio_pika.connect(
            settings.url,
            timeout=settings.connect_timeout,
            client_properties={"connection_name": settings.connection_name},
            heartbeat=settings.heartbeat,
        )
        session = Session(connection, self._generation, settings.connect_timeout)
        try:
            await self._setup(session)
        except BaseException:
            await session.close()
            raise
        return session

    async def _supervise(self, session: Session) -> None:
        try:
            while True:
                reason = await session.wait_lost()
                log.warning("connection lost; reconnecting", error=describe(reason))
                await session.close()
                self._session = None
                session = await self._reconnect()
                self.reconnects += 1
                self._install(session)
                log.info("reconnected", reconnects=self.reconnects)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            log.error("connection given up", error=describe(exc))
            self.fail(exc)

    async def _reconnect(self) -> Session:
        delays = self._delays()
        if self._settings.reconnect_spread > 0:
            await asyncio.sleep(random.uniform(0, self._settings.reconnect_spread))
        while True:
            try:
                return await self._open_session()
            except REFUSALS:
                raise
            except TRANSIENT as exc:
                delay = next(delays)
                log.warning("reconnect failed; retrying", error=describe(exc),
                            delay=round(delay, 2))
                await asyncio.sleep(delay)


async def unless_stopped(start: Awaitable[None], stop: asyncio.Event) -> bool:
    """Await `start` (a first connect) unless `stop` is set first; then cancel it, False.

    Under systemd the first connect may wait for the broker without bound: a SIGTERM in
    that wait (the handler sets `stop`) must end the process at once, not after it.
    """
    starting = asyncio.ensure_future(start)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((starting, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if starting.done():
        starting.result()  # ConnectFailed, BusFailed, ... propagate
        return True
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await starting
    return False


class _Backoff:
    """Exponential delays with jitter (so many agents do not reconnect in lockstep)."""

    def __init__(self, first: float, limit: float) -> None:
        self._next = first
        self._limit = limit

    def __iter__(self) -> _Backoff:
        return self

    def __next__(self) -> float:
        delay = self._next
        self._next = min(self._limit, self._next * 2)
        return delay * random.uniform(0.8, 1.2)  # jitter, not security
