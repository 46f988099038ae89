"""`BusClient`: the requester side of protocol.md §2-3, for vmctl, the Python client and the
HTTP gateway.

A request goes to exchange `vmd.commands` with routing key `command`, `user_id` = the
connection's user (RabbitMQ checks it; the gateway, whose user has the `impersonator` tag,
may set another), a fresh `correlation_id`, a `message_id` (the idempotency key: pass the
same one to retry safely) and `reply_to = amq.rabbitmq.reply-to`. Direct Reply-to needs the
pseudo-queue consumed in no-ack mode on the same channel *before* publishing, so the client's
setup does that on its publish channel, on every (re)connect.

Requests are mandatory: with no queue bound (vmd never ran on this vhost) the broker returns
the message and the call fails at once with `Unroutable` instead of timing out.

Replies that arrive over Direct Reply-to are lost if the connection drops, so a call waiting
at that moment fails with `ReplyLost` (retry with the same `message_id`: vmd answers a repeat
with the first answer).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any

import aiormq.abc
import structlog
from structlog.typing import FilteringBoundLogger

from vmd.bus import codec
from vmd.bus.errors import BusError, NotConnected, ReplyLost, RpcTimeout
from vmd.bus.link import Link, Session
from vmd.bus.publish import Outgoing, publish_batch
from vmd.bus.settings import BusSettings
from vmd.bus.topology import (
    CODE_HEADER,
    COMMAND_ROUTING_KEY,
    COMMANDS_EXCHANGE,
    DIRECT_REPLY_TO,
    STREAM_HEADER,
)
from vmd.model import JsonObject, Reply, Request

log: FilteringBoundLogger = structlog.get_logger(logger_name=__name__)  # see vmd.bus.link

DEFAULT_TIMEOUT = 30.0
# The longest task deadline (stop timeout 3600 s + stop_grace 150 s) plus a margin.
DEFAULT_FINAL_TIMEOUT = 3900.0

_CREATED = 201


def request_body(request: Request | JsonObject | bytes) -> bytes:
    """The wire body of a request (bytes are sent as given: tests send malformed ones)."""
    if isinstance(request, bytes):
        return request
    if isinstance(request, Request):
        return codec.encode({"method": request.method, "path": request.path, "data": request.data})
    return codec.encode(request)


def parse_reply(body: bytes, headers: dict[str, Any] | None) -> Reply:
    """A reply's code (header `code`, else body `code`) and body (without `code`)."""
    try:
        value = codec.decode_object(body, limit=None)
    except codec.BodyError as exc:
        raise BusError(f"malformed reply from vmd: {exc.reason}") from None
    code = (headers or {}).get(CODE_HEADER, value.get("code"))
    if not isinstance(code, int) or isinstance(code, bool):
        raise BusError("malformed reply from vmd: no integer code")
    return Reply(code, {k: v for k, v in value.items() if k != "code"})


@dataclass(slots=True)
class _Pending:
    session: Session
    replies: asyncio.Queue[Reply | BaseException]


class BusClient:
    """Sends requests to vmd and returns its replies; reconnects like `Bus`."""

    def __init__(self, settings: BusSettings) -> None:
        self.settings = settings
        self._pending: dict[str, _Pending] = {}
        self._link = Link(settings, self._setup)

    @property
    def user(self) -> str:
        return self.settings.user

    @property
    def reconnects(self) -> int:
        return self._link.reconnects

    async def start(self) -> None:
        await self._link.open()

    async def close(self) -> None:
        await self._link.close()
        self._fail_pending(None, BusError("the client was closed"))

    async def __aenter__(self) -> BusClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _setup(self, session: Session) -> None:
        channel = await session.open_channel()
        underlay = await channel.get_underlay_channel()
        # Before any publish on this channel (Direct Reply-to's rule).
        await underlay.basic_consume(DIRECT_REPLY_TO, self._on_reply, no_ack=True)
        session.publish_channel = channel
        session.on_lost(self._on_session_lost)

    def _on_session_lost(self, session: Session) -> None:
        self._fail_pending(
            session,
            ReplyLost(
                "the connection to the broker was lost while waiting for the reply; the "
                "request may have been executed (retry with the same message_id)"
            ),
        )

    def _fail_pending(self, session: Session | None, exc: BaseException) -> None:
        for pending in self._pending.values():
            if session is None or pending.session is session:
                pending.replies.put_nowait(exc)

    async def _on_reply(self, message: aiormq.abc.DeliveredMessage) -> None:
        props = message.header.properties
        pending = self._pending.get(props.correlation_id or "")
        if pending is None:
            log.debug("reply for an unknown correlation_id dropped",
                      correlation_id=props.correlation_id)
            return
        try:
            reply: Reply | BaseException = parse_reply(message.body, props.headers)
        except BusError as exc:
            reply = exc
        pending.replies.put_nowait(reply)

    async def call(
        self,
        request: Request | JsonObject | bytes,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        message_id: str | None = None,
        user_id: str | None = None,
    ) -> Reply:
        """Send one request and return its reply (`RpcTimeout` after `timeout` seconds)."""
        message = self._request(request, message_id=message_id, user_id=user_id, stream=False)
        try:
            return await self._send(message, timeout)
        finally:
            self._pending.pop(message.correlation_id or "", None)

    def stream(
        self,
        request: Request | JsonObject | bytes,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        final_timeout: float = DEFAULT_FINAL_TIMEOUT,
        message_id: str | None = None,
        user_id: str | None = None,
    ) -> AsyncIterator[Reply]:
        """Send a request with header `stream: true`; yield the first reply and, if it is a
        201, the final one (waited for up to `final_timeout` seconds)."""
        return self._stream(request, timeout, final_timeout, message_id=message_id, user_id=user_id)

    async def _stream(
        self,
        request: Request | JsonObject | bytes,
        timeout: float,
        final_timeout: float,
        *,
        message_id: str | None,
        user_id: str | None,
    ) -> AsyncIterator[Reply]:
        message = self._request(request, message_id=message_id, user_id=user_id, stream=True)
        correlation_id = message.correlation_id or ""
        try:
            first = await self._send(message, timeout)
            yield first
            if first.code == _CREATED:
                final = await self._next_reply(correlation_id, final_timeout)
                # Replies are at-least-once: a request redelivered after vmd lost its
                # connection (or restarted) may be answered 201 again. A final reply is
                # never a 201, so a repeat of the first answer is skipped.
                while final.code == _CREATED:
                    final = await self._next_reply(correlation_id, final_timeout)
                yield final
        finally:
            self._pending.pop(correlation_id, None)

    def _request(
        self,
        request: Request | JsonObject | bytes,
        *,
        message_id: str | None,
        user_id: str | None,
        stream: bool,
    ) -> Outgoing:
        return Outgoing(
            COMMANDS_EXCHANGE,
            COMMAND_ROUTING_KEY,
            request_body(request),
            headers=MappingProxyType({STREAM_HEADER: True} if stream else {}),
            correlation_id=uuid.uuid4().hex,
            message_id=message_id or uuid.uuid4().hex,
            reply_to=DIRECT_REPLY_TO,
            user_id=self.settings.user if user_id is None else user_id,
        )

    async def _send(self, message: Outgoing, timeout: float) -> Reply:
        assert message.correlation_id is not None
        connected = False
        try:
            async with asyncio.timeout(timeout):
                session = await self._link.wait_session()
                connected = True
                # Registered before the publish: the reply may arrive before the confirm.
                self._pending[message.correlation_id] = _Pending(session, asyncio.Queue())
                await publish_batch(session, (message,))
                return await self._next_reply(message.correlation_id, None)
        except TimeoutError:
            if not connected:
                raise NotConnected(
                    f"not connected to the broker ({self.settings.redacted_url}) "
                    f"within {timeout:g}s"
                ) from None
            raise RpcTimeout(f"no reply from vmd within {timeout:g}s") from None

    async def _next_reply(self, correlation_id: str, timeout: float | None) -> Reply:
        replies = self._pending[correlation_id].replies
        try:
            async with asyncio.timeout(timeout):
                reply = await replies.get()
        except TimeoutError:
            raise RpcTimeout(f"no final reply from vmd within {timeout:g}s") from None
        if isinstance(reply, BaseException):
            raise reply
        return reply
