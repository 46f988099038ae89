"""`Client`: vmd's public protocol (docs/protocol.md) as coroutines, for Python programs and vmctl.

It adds three things to `vmd.bus.BusClient`, which only sends a request and returns what
comes back:

- **Safe retry of a lost reply.** A reply over Direct Reply-to is lost when the connection
  drops while the client waits (`ReplyLost`), or the connection drops between publish and
  confirm (`ConnectionLost`): the request may or may not have been executed. The client asks
  again, once, with the *same* `message_id`; vmd does not execute a `(user_id, message_id)`
  it has seen in the last 24 h again but sends the first answer again (same `task_id`). So
  every call carries a `message_id` (a fresh random one unless the caller gives one).
- **Waiting for the end of a task** (`wait=True`): stream mode (header `stream: true`),
  the 201 PENDING then the final reply, with progress ticks for the caller meanwhile. If the
  connection drops after the 201, the final reply is lost with it: the client then polls
  `GET /task/<task_id>/status` until the task has ended (that is what the repeat of the
  request would do too, and it does not depend on vmd streaming for a repeated request).
  A lost reply before the 201 is retried once with the same `message_id`, without stream
  mode, and followed by the same polling.
- **One method per request** of protocol.md §2 (paths built here, `order_by` joined).

Every result is a `vmd.model.Reply` (code + body, the body without `code`); a 4xx/5xx is a
reply, not an exception. Exceptions are the bus's (`vmd.bus.BusError` and subclasses, all
re-exported by `vmd.client`), each a one-line message.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import structlog

from vmd.bus import (
    DEFAULT_FINAL_TIMEOUT,
    DEFAULT_TIMEOUT,
    BusClient,
    BusError,
    BusSettings,
    ConnectionLost,
    ReplyLost,
    RpcTimeout,
)
from vmd.client.waiting import Progress, Ticker, poll_interval
from vmd.model import JsonObject, Reply, Request

# structlog like the rest of vmd (one logging style); `logger_name` keeps the module's
# name for programs that route structlog to stdlib logging (vmctl does).
log = structlog.get_logger(logger_name=__name__)

PENDING = 201
# Failures after which the request may have been executed and its answer is lost: asking
# again with the same message_id is safe and gets the first answer.
RETRYABLE: tuple[type[BusError], ...] = (ReplyLost, ConnectionLost)


def _segment(value: str, what: str) -> str:
    """A path segment (VM hostname or uuid, task id); a `/` would address another path."""
    if not value or "/" in value:
        raise ValueError(f"not a valid {what}: {value!r}")
    return value


@contextlib.asynccontextmanager
async def _closing(stream: AsyncIterator[Reply]) -> AsyncIterator[AsyncIterator[Reply]]:
    """`contextlib.aclosing` for the AsyncIterator the bus returns (an async generator): a
    wait that ends early must run the generator's cleanup (it unregisters the reply)."""
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


def _task_id(reply: Reply) -> str:
    task_id = reply.body.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        raise BusError("malformed reply from vmd: 201 PENDING without a task_id")
    return task_id


class Client:
    """A connection to vmd through the broker; the URL's user is the principal.

    `timeout`: seconds to wait for the first answer of a request (and for a connection);
    `final_timeout`: seconds to wait for a task's end with `wait=True` (default: longer than
    any task deadline, so the task's own deadline answers first).
    """

    def __init__(
        self,
        url: str | BusSettings,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        final_timeout: float = DEFAULT_FINAL_TIMEOUT,
        connection_name: str = "vmd-client",
        connect_attempts: int | None = 3,
    ) -> None:
        if isinstance(url, BusSettings):
            self.settings = url
        else:
            self.settings = BusSettings(
                url, connection_name=connection_name, connect_attempts=connect_attempts
            )
        self.timeout = timeout
        self.final_timeout = final_timeout
        # How many times a request was sent again after a lost reply (for tests and logs).
        self.retries = 0
        self._bus = BusClient(self.settings)

    @property
    def user(self) -> str:
        """The principal: the AMQP user of the URL."""
        return self.settings.user

    @property
    def reconnects(self) -> int:
        return self._bus.reconnects

    async def connect(self) -> None:
        """Connect (`ConnectFailed` with a one-line reason when the broker cannot be reached).

        Named `connect`, not `start`: `start(vm)` is the request that starts a VM."""
        await self._bus.start()

    async def close(self) -> None:
        await self._bus.close()

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the generic request ---------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        data: Mapping[str, Any] | None = None,
        *,
        wait: bool = False,
        message_id: str | None = None,
        timeout: float | None = None,
        final_timeout: float | None = None,
        progress: Progress | None = None,
    ) -> Reply:
        """Send `{"method", "path", "data"}` and return vmd's answer.

        `wait=False`: the first answer (a 201 PENDING for a task). `wait=True`: stream mode;
        a 201 is followed by the task's final reply, which is returned; `progress` is called
        with a `Waiting` when the 201 arrives and then periodically until the end.
        `message_id`: the idempotency key (random unless given; give your own to be able to
        repeat a request yourself, e.g. after a crash of your program).
        """
        request = Request(method.upper(), path, dict(data or {}))
        message_id = message_id or uuid.uuid4().hex
        first_timeout = self.timeout if timeout is None else timeout
        if not wait:
            return await self._call(request, message_id, first_timeout)
        final = self.final_timeout if final_timeout is None else final_timeout
        return await self._wait(request, message_id, first_timeout, final, progress)

    async def _call(self, request: Request, message_id: str, timeout: float) -> Reply:
        try:
            return await self._bus.call(request, timeout=timeout, message_id=message_id)
        except RETRYABLE as exc:
            self.retries += 1
            log.info("request lost; asking again", error=str(exc), message_id=message_id)
            return await self._bus.call(request, timeout=timeout, message_id=message_id)

    async def _wait(
        self,
        request: Request,
        message_id: str,
        timeout: float,
        final_timeout: float,
        progress: Progress | None,
    ) -> Reply:
        loop = asyncio.get_running_loop()
        pending: Reply | None = None
        ticker: Ticker | None = None
        deadline = 0.0
        try:
            try:
                stream = self._bus.stream(
                    request, timeout=timeout, final_timeout=final_timeout, message_id=message_id
                )
                async with _closing(stream) as replies:
                    async for reply in replies:
                        if reply.code != PENDING or pending is not None:
                            return reply
                        pending = reply
                        deadline = loop.time() + final_timeout
                        ticker = Ticker(progress, reply, _task_id(reply))
                        ticker.start()
                raise BusError("vmd ended a stream without a final reply")
            except RETRYABLE as exc:
                self.retries += 1
                if pending is None:
                    # Lost before the first answer: ask again (same message_id, so it is not
                    # executed twice). No stream mode: the task may have ended already, and
                    # the end of a task is then learned by polling below either way.
                    log.info("request lost; asking again", error=str(exc), message_id=message_id)
                    pending = await self._bus.call(request, timeout=timeout, message_id=message_id)
                    if pending.code != PENDING:
                        return pending
                    deadline = loop.time() + final_timeout
                    ticker = Ticker(progress, pending, _task_id(pending))
                    ticker.start()
                else:
                    log.info(
                        "stream lost; polling the task", error=str(exc), task_id=_task_id(pending)
                    )
                return await self._poll(_task_id(pending), deadline, timeout)
        finally:
            if ticker is not None:
                await ticker.stop()

    async def _poll(self, task_id: str, deadline: float, timeout: float) -> Reply:
        """`GET /task/<task_id>/status` until it is not 201 PENDING, or `RpcTimeout`."""
        loop = asyncio.get_running_loop()
        request = Request("GET", f"/task/{task_id}/status")
        polls = 0
        while True:
            delay = poll_interval(polls)
            polls += 1
            if loop.time() + delay > deadline:
                raise RpcTimeout(f"task {task_id} did not end in time (it may still run)")
            await asyncio.sleep(delay)
            # A fresh message_id per poll: a repeated one would get the first answer again.
            reply = await self._call(request, uuid.uuid4().hex, timeout)
            if reply.code != PENDING:
                return reply

    async def wait_task(
        self,
        task_id: str,
        *,
        final_timeout: float | None = None,
        progress: Progress | None = None,
    ) -> Reply:
        """The final state of a task already created (polls `GET /task/<task_id>/status`)."""
        loop = asyncio.get_running_loop()
        final = self.final_timeout if final_timeout is None else final_timeout
        deadline = loop.time() + final
        first = await self.task_status(task_id)
        if first.code != PENDING:
            return first
        ticker = Ticker(progress, first, task_id)
        ticker.start()
        try:
            return await self._poll(task_id, deadline, self.timeout)
        finally:
            await ticker.stop()

    # -- one method per request (protocol.md §2, docs/fsm.md §3) --------------------------

    async def status_list(self, order_by: str | Sequence[str] | None = None) -> Reply:
        """`GET /vm/status`; `order_by` e.g. `"-status,hostname"` or `["-status", "hostname"]`."""
        data: JsonObject = {}
        if order_by is not None:
            data["order_by"] = order_by if isinstance(order_by, str) else ",".join(order_by)
        return await self.request("GET", "/vm/status", data)

    async def status(self, vm: str) -> Reply:
        """`GET /vm/<vm>/status`: vmd's stored view of one VM."""
        return await self.request("GET", f"/vm/{_segment(vm, 'VM')}/status")

    async def history(self, vm: str, *, limit: int | None = None,
                      before: int | None = None) -> Reply:
        """`GET /vm/<vm>/status/history` (vmd extension): the VM's power history, newest
        first; `limit` entries (1..1000, default 50), older than seq `before` if given."""
        data: JsonObject = {}
        if limit is not None:
            data["limit"] = limit
        if before is not None:
            data["before"] = before
        return await self.request("GET", f"/vm/{_segment(vm, 'VM')}/status/history", data)

    async def current(
        self, vm: str, *, wait: bool = False, progress: Progress | None = None
    ) -> Reply:
        """`GET /vm/<vm>/status/current`: ask the node (201 PENDING, or the end with wait)."""
        path = f"/vm/{_segment(vm, 'VM')}/status/current"
        return await self.request("GET", path, wait=wait, progress=progress)

    async def resync(
        self,
        vm: str,
        force: bool = False,
        *,
        wait: bool = False,
        progress: Progress | None = None,
        message_id: str | None = None,
    ) -> Reply:
        """`PUT /vm/<vm>/status/current` (admin): apply the node's state unconditionally."""
        path = f"/vm/{_segment(vm, 'VM')}/status/current"
        data: JsonObject = {"force": True} if force else {}
        return await self.request(
            "PUT", path, data, wait=wait, progress=progress, message_id=message_id
        )

    async def start(
        self,
        vm: str,
        *,
        wait: bool = False,
        progress: Progress | None = None,
        message_id: str | None = None,
        **params: Any,
    ) -> Reply:
        """`PUT /vm/<vm>/status/start`; params: update, cdimage, cdimage_once, cdimage2."""
        return await self._action("start", vm, params, wait, progress, message_id)

    async def stop(
        self,
        vm: str,
        *,
        wait: bool = False,
        progress: Progress | None = None,
        message_id: str | None = None,
        **params: Any,
    ) -> Reply:
        """`PUT /vm/<vm>/status/stop`; params: force, timeout, freeze, unfreeze, update."""
        return await self._action("stop", vm, params, wait, progress, message_id)

    async def reboot(
        self,
        vm: str,
        *,
        wait: bool = False,
        progress: Progress | None = None,
        message_id: str | None = None,
        **params: Any,
    ) -> Reply:
        """`PUT /vm/<vm>/status/reboot`; params: force, timeout, update."""
        return await self._action("reboot", vm, params, wait, progress, message_id)

    async def _action(
        self,
        action: str,
        vm: str,
        params: JsonObject,
        wait: bool,
        progress: Progress | None,
        message_id: str | None,
    ) -> Reply:
        path = f"/vm/{_segment(vm, 'VM')}/status/{action}"
        return await self.request(
            "PUT", path, params, wait=wait, progress=progress, message_id=message_id
        )

    async def define(
        self, vm: str, properties: Mapping[str, Any], *, message_id: str | None = None
    ) -> Reply:
        """`PUT /vm/<vm>/define` (admin): stage `vmadm update` properties ({} clears them)."""
        path = f"/vm/{_segment(vm, 'VM')}/define"
        return await self.request("PUT", path, properties, message_id=message_id)

    async def task_status(self, task_id: str) -> Reply:
        """`GET /task/<task_id>/status`: 201 PENDING, 200 SUCCESS, 400 FAILURE, 410, 404."""
        return await self.request("GET", f"/task/{_segment(task_id, 'task id')}/status")
