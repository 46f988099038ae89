"""Publishing a request for a principal, and turning every bus failure into an HTTP answer.

The gateway is just another command publisher (protocol.md §2): one `BusClient`
connection, its user tagged `impersonator` so that the broker accepts `user_id` = the
caller's principal. What can go wrong on the way, and what the HTTP client gets:

| bus outcome                                    | answer                         |
|------------------------------------------------|--------------------------------|
| a reply                                        | the reply                      |
| reply or confirm lost (connection dropped)     | retried until the timeout (*)  |
| no connection within the timeout               | 503                            |
| no queue bound / no exchange (vmd never ran)   | 503                            |
| broker refused `user_id` (no impersonator tag) | 502, saying so                 |
| no reply within the timeout                    | 504                            |
| malformed reply                                | 502                            |

(*) with the same `message_id`, then 503. A retry is safe: vmd answers a repeated
`(user_id, message_id)` with its first answer (protocol.md §5).

The `message_id` is the client's `Idempotency-Key` header when it sends one, so a client's
own retry of an HTTP request is executed at most once too. Without one, each HTTP request's
publish carries a random `message_id` (the AMQP client library, aiormq, stamps one on every
publish that has none: it matches returned messages by it), kept for this request's retries
only. That costs vmd nothing for reads: it records only requests that may change something
(protocol.md §5), so status polling adds no record. Details name the cause without the
broker's address or credentials (those go to the log).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Mapping

from vmd.api.translate import malformed
from vmd.bus import (
    BusClient,
    BusClosed,
    BusError,
    BusFailed,
    ConnectionLost,
    NotConnected,
    PublishRefused,
    PublishTimeout,
    ReplyLost,
    RpcTimeout,
    Unroutable,
)
from vmd.fsm.replies import error
from vmd.model import Reply
from vmd.obs.logging import get_logger

log = get_logger("vmd.api.forward")

CREATED = 201
# Between two tries after a lost connection: the link is reconnecting meanwhile.
RETRY_PAUSE = 0.1

UNAVAILABLE = "Service unavailable"
# The broker's text for a user_id it refuses (PRECONDITION_FAILED, rabbit_channel).
_USER_ID_REFUSED = "user_id property"

_RETRYABLE = (ReplyLost, ConnectionLost, PublishTimeout)

# The IETF httpapi draft's header (draft-ietf-httpapi-idempotency-key-header): its value is
# a Structured Field string (`"..."`); a bare token is accepted too, as most APIs do.
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
# vmd's longest message_id (protocol.md §5; vmd.daemon.requests.MAX_MESSAGE_ID).
MAX_IDEMPOTENCY_KEY = 128
BAD_IDEMPOTENCY_KEY = (f"{IDEMPOTENCY_KEY_HEADER} must be 1 to {MAX_IDEMPOTENCY_KEY} printable "
                       "ASCII characters")


def idempotency_key(headers: Mapping[str, str]) -> str | Reply | None:
    """The request's `Idempotency-Key` (the `message_id` to send), None without one, or
    the 400 to answer for a malformed one."""
    value = headers.get(IDEMPOTENCY_KEY_HEADER)
    if value is None:
        return None
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if not 0 < len(value) <= MAX_IDEMPOTENCY_KEY or not all(" " <= c <= "~" for c in value):
        return malformed(BAD_IDEMPOTENCY_KEY)
    return value


async def close_iterator(iterator: AsyncIterator[Reply]) -> None:
    """Close a `BusClient.stream` iterator (an async generator: its `finally` forgets the
    pending reply)."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


def impersonation_detail(principal: str, user: str) -> str:
    return (
        f"Bad gateway: the message broker refused a request on behalf of {principal!r}: the "
        f"gateway's broker user {user!r} lacks the impersonator tag (docs/api.md)"
    )


def is_impersonation_refusal(exc: BaseException) -> bool:
    return isinstance(exc, PublishRefused) and _USER_ID_REFUSED in str(exc)


class Forwarder:
    """Sends protocol requests through `client` and answers for the bus when it fails.

    `on_fatal` is called once when the client stopped for good (`BusFailed`): the process
    should then exit so that systemd restarts it.
    """

    def __init__(
        self,
        client: BusClient,
        *,
        timeout: float,
        final_timeout: float,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.final_timeout = final_timeout
        self._on_fatal = on_fatal

    async def call(self, body: bytes, principal: str, message_id: str | None,
                   *, timeout: float | None = None) -> Reply:
        """One request, its reply (or the answer standing in for it). `message_id` None:
        a random one for this request and its retries."""
        reply, _ = await self._send(body, principal, message_id, stream=False, timeout=timeout)
        return reply

    async def open_stream(
        self, body: bytes, principal: str, message_id: str | None
    ) -> tuple[Reply, AsyncIterator[Reply] | None]:
        """A request with header `stream: true`: its first reply and, when that is a 201 and
        it came on the first try, the iterator that yields vmd's final reply.

        After a retry the final reply may never come (the repeat was answered from vmd's
        idempotency record), so the caller then polls the task instead (None).
        """
        return await self._send(body, principal, message_id, stream=True, timeout=None)

    async def _send(
        self, body: bytes, principal: str, message_id: str | None, *, stream: bool,
        timeout: float | None,
    ) -> tuple[Reply, AsyncIterator[Reply] | None]:
        budget = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        tries = 0
        if message_id is None:
            message_id = uuid.uuid4().hex
        while True:
            tries += 1
            left = max(deadline - loop.time(), 0.001)
            try:
                if not stream:
                    reply = await self.client.call(
                        body, timeout=left, message_id=message_id, user_id=principal)
                    return reply, None
                replies = self.client.stream(
                    body, timeout=left, final_timeout=self.final_timeout,
                    message_id=message_id, user_id=principal)
                first = await anext(replies)
                if first.code == CREATED and tries == 1:
                    return first, replies
                await close_iterator(replies)
                return first, None
            except _RETRYABLE as exc:
                if loop.time() + RETRY_PAUSE >= deadline:
                    log.warning("broker round trip failed", error=str(exc), tries=tries,
                                message_id=message_id)
                    return error(503, f"{UNAVAILABLE}: the connection to the message broker "
                                      "was lost"), None
                log.info("broker connection lost; retrying with the same message_id",
                         error=str(exc), message_id=message_id)
                await asyncio.sleep(RETRY_PAUSE)
            except BusError as exc:
                return self._answer(exc, principal, message_id), None

    def _answer(self, exc: BusError, principal: str, message_id: str) -> Reply:
        text = str(exc)
        if isinstance(exc, RpcTimeout):
            log.warning("no answer from vmd", error=text, message_id=message_id)
            return error(504, f"Gateway timeout: no answer from vmd within {self.timeout:g}s")
        if is_impersonation_refusal(exc):
            log.error("the broker refused user_id: the gateway's broker user lacks the "
                      "impersonator tag", user=self.client.user, principal=principal,
                      error=text)
            return error(502, impersonation_detail(principal, self.client.user))
        if isinstance(exc, NotConnected):
            log.warning("broker unreachable", error=text)
            return error(503, f"{UNAVAILABLE}: the message broker is unreachable")
        if isinstance(exc, Unroutable | PublishRefused):
            log.error("request not accepted by the broker (is vmd running on this vhost?)",
                      error=text)
            return error(503, f"{UNAVAILABLE}: vmd is not running")
        if isinstance(exc, BusFailed):
            log.error("the broker link stopped for good", error=text)
            if self._on_fatal is not None:
                self._on_fatal(exc)
            return error(503, UNAVAILABLE)
        if isinstance(exc, BusClosed):
            return error(503, f"{UNAVAILABLE}: the gateway is shutting down")
        log.error("bad answer from vmd", error=text, message_id=message_id)
        return error(502, "Bad gateway: malformed answer from vmd")
