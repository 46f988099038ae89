"""The HTTP side of `vmd api`: one aiohttp handler for every path, answering only in JSON.

Every request goes through the same steps, in upstream's order (a URL that does not resolve
is a 404 before anyone is asked who they are; authentication comes before the method
check, as in Danube's views):

1. outside the prefix, a path protocol.md does not know, or one with an encoded `/`
   (`%2F`: segments are split on the raw path): 404 `Not found`;
2. the API key (vmd.api.auth): 403;
3. a method the path does not take: 405 `Method "X" not allowed.`;
4. `data`: the query string (GET) or the JSON body (400 when malformed; 413 over 64 KiB);
5. the `Idempotency-Key` header, if any (400 when malformed): the request's `message_id`
   (else a random one for this request and its retries: vmd.api.forward);
6. with `ES-STREAM`, a stream slot of the API key (429 past `[api] max_streams_per_key`);
7. one protocol request published for the key's principal; its reply is the answer, or,
   with `ES-STREAM` and a 201 for a task, a stream held until the task ends (vmd.api.stream).

No aiohttp router: one catch-all route, so that aiohttp never answers 404/405 by itself with
a text page; a bug in a handler answers 500 `{"detail": ...}` and logs its traceback.
The gateway keeps no state between requests, so several can run behind a load balancer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from vmd.api.auth import KeyRing
from vmd.api.forward import CREATED, Forwarder, close_iterator, idempotency_key
from vmd.api.metrics import ApiMetrics
from vmd.api.stream import Offsets, StreamSlots, TaskWatch, stream_task, too_many_streams
from vmd.api.translate import (
    ES_CLIENT,
    NOT_FOUND_REPLY,
    STREAM_REQUEST_HEADER,
    accept_indent,
    body_data,
    encoded_slash,
    keepalive_offsets,
    malformed,
    query_data,
    render,
    reply_headers,
    request_body,
    request_kind,
    strip_prefix,
    task_id_of,
    too_large,
)
from vmd.bus import DEFAULT_FINAL_TIMEOUT, MAX_BODY
from vmd.fsm.replies import error
from vmd.fsm.routing import Kind, Route, route
from vmd.model import JsonObject, Reply
from vmd.obs.logging import get_logger
from vmd.obs.metrics import OTHER

log = get_logger("vmd.api")

# How long a stream may wait for its task: every vmd task ends by its deadline (at most
# a 3600 s stop timeout plus the grace), so this is the bus's final-reply timeout.
# Upstream gives up after 3600 s (API_SYNC_TIMEOUT).
STREAM_LIMIT = DEFAULT_FINAL_TIMEOUT


@dataclass(slots=True)
class _Seen:
    """What a request turned out to be, for its log line and metrics."""

    started: float = 0.0
    kind: str = OTHER
    principal: str | None = None
    task_id: str | None = None
    stream: str | None = None
    first: float | None = None  # seconds to the 201 of a stream


class Gateway:
    """The request handler; `application()` builds the aiohttp app around it."""

    def __init__(
        self,
        forwarder: Forwarder,
        keys: KeyRing,
        *,
        prefix: str,
        metrics: ApiMetrics,
        offsets: Offsets = keepalive_offsets,
        stream_limit: float = STREAM_LIMIT,
        max_streams_per_key: int = 32,
    ) -> None:
        self.forwarder = forwarder
        self.keys = keys
        self.prefix = prefix
        self.metrics = metrics
        self.offsets = offsets
        self.stream_limit = stream_limit
        # Set at shutdown: open streams end at once with their task's current state.
        self.closing = asyncio.Event()
        self.streams = 0
        self.slots = StreamSlots(max_streams_per_key)

    def application(self) -> web.Application:
        # client_max_size: aiohttp refuses a longer body while reading it (413 below).
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, _: web.Application) -> None:
        # aiohttp calls this after the listening sockets closed and before it waits for
        # the handlers still running: streams end now, plain requests get their answers.
        self.closing.set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        started = loop.time()
        seen = _Seen(started=started)
        try:
            response = await self._dispatch(request, seen)
        except Exception:
            log.exception("internal error while answering a request", method=request.method,
                          path=request.path)
            response = self._respond(request, error(500, "Internal server error"))
        seconds = loop.time() - started
        self.metrics.request(seen.kind, response.status,
                             seen.first if seen.first is not None else seconds)
        log.info("request", method=request.method, path=request.path, code=response.status,
                 principal=seen.principal, kind=seen.kind, task_id=seen.task_id,
                 stream=seen.stream, seconds=round(seconds, 4))
        return response

    async def _dispatch(self, request: web.Request, seen: _Seen) -> web.StreamResponse:
        # The segments are the raw path's: an encoded "/" is no separator (docs/api.md).
        path = None if encoded_slash(request.rel_url.raw_path) else strip_prefix(
            request.path, self.prefix)
        if path is None:
            return self._respond(request, NOT_FOUND_REPLY)
        routed = route(request.method, path)
        if isinstance(routed, Reply) and routed.code == NOT_FOUND_REPLY.code:
            return self._respond(request, routed)
        principal = self.keys.authenticate(request.headers)
        if isinstance(principal, Reply):
            return self._respond(request, principal)
        seen.principal = principal
        if isinstance(routed, Reply):
            return self._respond(request, routed)
        seen.kind = request_kind(routed)
        if request.method == "GET":
            data: JsonObject | Reply = query_data(request.query.items())
        else:
            try:
                raw = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return self._respond(request, too_large(request.content_length))
            except ConnectionError:  # the client went away mid-body: nobody to answer
                return self._respond(request, malformed("the body ended early"))
            data = body_data(raw)
        if isinstance(data, Reply):
            return self._respond(request, data)
        body = request_body(request.method, path, data)
        if len(body) > MAX_BODY:
            return self._respond(request, too_large())
        message_id = idempotency_key(request.headers)
        if isinstance(message_id, Reply):
            return self._respond(request, message_id)
        stream = request.headers.get(STREAM_REQUEST_HEADER, "")
        # Upstream never streams a task-status request itself (`response.task_status`).
        if stream and routed.kind is not Kind.TASK:
            return await self._stream(request, seen, routed, body, principal, message_id,
                                      es_client=stream == ES_CLIENT)
        reply = await self.forwarder.call(body, principal, message_id)
        seen.task_id = task_id_of(reply.body)
        return self._respond(request, reply)

    async def _stream(self, request: web.Request, seen: _Seen, routed: Route, body: bytes,
                      principal: str, message_id: str | None, *, es_client: bool
                      ) -> web.StreamResponse:
        """ES-STREAM in one of the API key's slots, taken before publishing (nothing runs
        when there is none left: 429)."""
        key = self.keys.key_of(request.headers)
        if not self.slots.take(key):
            return self._respond(request, too_many_streams())
        try:
            return await self._held_stream(request, seen, routed, body, principal, message_id,
                                           es_client=es_client)
        finally:
            self.slots.release(key)

    async def _held_stream(self, request: web.Request, seen: _Seen, routed: Route, body: bytes,
                           principal: str, message_id: str | None, *, es_client: bool
                           ) -> web.StreamResponse:
        first, replies = await self.forwarder.open_stream(body, principal, message_id)
        task_id = seen.task_id = task_id_of(first.body)
        if first.code != CREATED or task_id is None:
            if replies is not None:
                await close_iterator(replies)
            return self._respond(request, first)
        loop = asyncio.get_running_loop()
        started = loop.time()
        seen.first = started - seen.started  # the 201 goes out now
        watch = TaskWatch(self.forwarder, principal, task_id, replies)
        self.streams += 1
        self.metrics.streams.inc()
        try:
            response, outcome, code = await stream_task(
                request, first, task_id, watch, es_client=es_client, stop=self.closing,
                offsets=self.offsets, limit=self.stream_limit,
                indent=accept_indent(request.headers.get("Accept", "")))
        finally:
            self.streams -= 1
            self.metrics.streams.dec()
        seen.stream = outcome
        self.metrics.stream_ended(outcome)
        log.info("stream ended", task_id=task_id, outcome=outcome, final_code=code,
                 path=request.path, principal=principal, kind=request_kind(routed),
                 seconds=round(loop.time() - started, 3))
        return response

    def _respond(self, request: web.Request, reply: Reply) -> web.Response:
        indent = accept_indent(request.headers.get("Accept", ""))
        return web.Response(status=reply.code, body=render(reply.body, indent),
                            headers=reply_headers(reply))
