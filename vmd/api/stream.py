"""ES-STREAM: hold a 201 open until its task ends, the way Danube's API does for `es`.

Upstream (Danube Cloud's api/middleware.py, docs/api.md §4): when a request carries `ES-STREAM` and
the answer is 201 for a task, the server answers 201 at once with headers `es_stream` and
`es_task_id`, then sends a single space now and then to keep the connection open, and when
the task ends `<final code>\\n` (only for the header value `es`: Danube's `es` reads it as the
real status) followed by the JSON of `GET /task/<id>/status`. After its time limit it sends
the pending body instead.

Here the final state normally arrives by push: the request went out with header
`stream: true`, so vmd sends a second reply when the task ends (protocol.md §2). If that
channel is lost (the broker connection dropped, or the request had to be retried), the
stream falls back to upstream's way: asking `GET /task/<id>/status` at every keep-alive.

A stream ends in one of four ways, each counted (`vmd_api_streams_ended_total{outcome}`):
`final` (the task ended), `timeout` (the limit passed: the current state is sent),
`shutdown` (SIGTERM: the current state is sent at once, so a draining gateway does not
hold connections for an hour) and `disconnected` (the client went away: noticed at the next
write, logged and dropped; nothing of it stays behind).

Each API key may hold at most `[api] max_streams_per_key` streams open (`StreamSlots`): a
slot is taken before the request is published, so one past it answers 429 at once and
nothing runs (docs/api.md §4).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator

from aiohttp import web

from vmd.api.forward import CREATED, Forwarder, close_iterator
from vmd.api.translate import (
    CONTENT_TYPE,
    STREAM_HEADER,
    TASK_ID_HEADER,
    render,
    request_body,
)
from vmd.bus import BusError
from vmd.fsm.replies import error
from vmd.model import Reply
from vmd.obs.logging import get_logger

log = get_logger("vmd.api.stream")

# How long a poll of the task's state may take when a stream is cut (shutdown, time limit).
CUT_POLL_TIMEOUT = 5.0

Offsets = Callable[[], Iterator[float]]

TOO_MANY_STREAMS = "Too many open ES-STREAM responses for this API key"


def too_many_streams() -> Reply:
    return error(429, TOO_MANY_STREAMS)


class StreamSlots:
    """Open ES-STREAM responses per API key (its digest), at most `limit` each."""

    __slots__ = ("_open", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[bytes, int] = {}

    def take(self, key: bytes) -> bool:
        """One more stream for `key`; False (nothing taken) when it has `limit` open."""
        n = self._open.get(key, 0)
        if n >= self.limit:
            return False
        self._open[key] = n + 1
        return True

    def release(self, key: bytes) -> None:
        n = self._open[key] - 1
        if n:
            self._open[key] = n
        else:
            del self._open[key]

    def open(self, key: bytes) -> int:
        return self._open.get(key, 0)


class TaskWatch:
    """Waits for the end of one task: vmd's pushed final reply, else by polling."""

    def __init__(self, forwarder: Forwarder, principal: str, task_id: str,
                 replies: AsyncIterator[Reply] | None) -> None:
        self._forwarder = forwarder
        self._principal = principal
        self._task_id = task_id
        self._replies = replies
        self._push: asyncio.Future[Reply] | None = None

    @property
    def pushing(self) -> bool:
        return self._replies is not None

    async def wait(self, until: float, stop: asyncio.Event) -> Reply | None:
        """The final reply if the task ends by loop time `until`; None if it still runs
        then, or as soon as `stop` is set."""
        loop = asyncio.get_running_loop()
        stopped = asyncio.ensure_future(stop.wait())
        try:
            if self._replies is not None:
                if self._push is None:
                    self._push = asyncio.ensure_future(anext(self._replies))
                await asyncio.wait((self._push, stopped), timeout=max(until - loop.time(), 0),
                                   return_when=asyncio.FIRST_COMPLETED)
                if not self._push.done():
                    return None
                try:
                    return self._push.result()
                except (BusError, StopAsyncIteration) as exc:
                    log.info("stream: final reply channel lost; polling the task instead",
                             task_id=self._task_id, error=str(exc) or type(exc).__name__)
                    await self._drop_push()
            await asyncio.wait((stopped,), timeout=max(until - loop.time(), 0))
            if stop.is_set():
                return None
            return await self.poll(None)
        finally:
            stopped.cancel()

    async def poll(self, timeout: float | None) -> Reply | None:
        """`GET /task/<id>/status` now: the reply when the task has ended, else None."""
        reply = await self.current(timeout)
        return reply if reply is not None and reply.code != CREATED else None

    async def current(self, timeout: float | None) -> Reply | None:
        """The task's state now (`GET /task/<id>/status`), None if vmd cannot be asked."""
        body = request_body("GET", f"/task/{self._task_id}/status", {})
        # A read: vmd does not record it, whatever its message_id.
        reply = await self._forwarder.call(body, self._principal, None, timeout=timeout)
        return reply if reply.code < 500 else None

    async def close(self) -> None:
        """Forget the task: no future and no pending reply of it stay behind."""
        await self._drop_push()

    async def _drop_push(self) -> None:
        push, replies = self._push, self._replies
        self._push = self._replies = None
        if push is not None and not push.done():
            push.cancel()
            with contextlib.suppress(asyncio.CancelledError, BusError, StopAsyncIteration):
                await push
        elif push is not None and not push.cancelled():
            push.exception()  # retrieved: no "exception was never retrieved" warning
        if replies is not None:
            await close_iterator(replies)


async def stream_task(
    request: web.Request,
    first: Reply,
    task_id: str,
    watch: TaskWatch,
    *,
    es_client: bool,
    stop: asyncio.Event,
    offsets: Offsets,
    limit: float,
    indent: int | None,
) -> tuple[web.StreamResponse, str, int]:
    """Answer 201 now and hold the response until the task ends; return the response, how
    the stream ended and the final code sent."""
    response = web.StreamResponse(status=CREATED, headers={
        "Content-Type": CONTENT_TYPE, STREAM_HEADER: "true", TASK_ID_HEADER: task_id})
    loop = asyncio.get_running_loop()
    start = loop.time()
    outcome, final = "final", None
    try:
        await response.prepare(request)
        for offset in offsets():
            if offset > limit:
                outcome = "timeout"
                break
            final = await watch.wait(start + offset, stop)
            if final is not None:
                break
            if stop.is_set():
                outcome = "shutdown"
                break
            await response.write(b" ")
        if final is None:
            # Cut short: what the task looks like now, else the 201 it started with.
            final = await watch.current(CUT_POLL_TIMEOUT) or first
        if es_client:
            await response.write(f"{final.code}\n".encode())
        await response.write(render(final.body, indent))
        await response.write_eof()
    except ConnectionError as exc:
        outcome = "disconnected"
        log.info("stream: the client went away; dropping it", task_id=task_id,
                 error=str(exc) or type(exc).__name__,
                 seconds=round(loop.time() - start, 3))
    finally:
        await watch.close()
    return response, outcome, final.code if final is not None else CREATED
