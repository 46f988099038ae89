"""The load generator: requests over plain aio-pika, every answer kept by correlation_id.

Each user (admin, alice, bob) has one `Link`: a plain `aio_pika.connect` (as the acceptance
suite would), a confirm-mode channel, a Direct Reply-to consumer on it, and its own
reconnect loop (the broker may be cut, closed or restarted under it). A request is a `Req`
with a fixed `message_id`; every time it is sent it gets a new `correlation_id`
(`<message_id>.<attempt>`), so each answer says which attempt it answers.

`perform(req)` sends it and waits for its answer(s): the first one, and in stream mode the
final one after a 201. If the connection it was sent on is lost before that, the request
is sent again **with the same message_id** on the next connection, as protocol.md §5 tells
a client to do (vmd must then answer with the first answer, never execute it again). A
request whose connection stays up waits for its answer however long vmd is away (a killed
daemon: the request waits in `vmd.commands`), up to `answer_timeout`; one not answered by
then is recorded as unanswered, which the checks count as a lost request.

`Load.run` keeps `concurrency` workers busy for a while, each picking an operation and a
VM the user may command (vmd.fsm's gate then answers 201, 409, 417, 423 ... as the VM's
state goes), so the daemon sees a mix of reads, power tasks and conflicts all the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from .cluster import Timing, VmInfo

READS = ("list", "get", "task")  # executing one twice has no effect
POWER = ("start", "stop", "stop_force", "reboot")


@dataclass(frozen=True)
class Answer:
    correlation_id: str
    code: int
    body: dict[str, Any]
    at: float

    @property
    def attempt(self) -> int:
        return int(self.correlation_id.rsplit(".", 1)[1])


@dataclass
class Req:
    message_id: str
    user: str
    op: str
    method: str
    path: str
    data: dict[str, Any]
    stream: bool = False
    vm: str | None = None  # uuid
    sent: float = 0.0
    attempts: int = 0
    answers: list[Answer] = field(default_factory=list)
    unanswered: bool = False
    errors: list[str] = field(default_factory=list)  # why an attempt was sent again
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def first(self) -> Answer | None:
        return self.answers[0] if self.answers else None

    @property
    def task_id(self) -> str | None:
        for a in self.answers:
            if a.code == 201:
                return str(a.body.get("task_id"))
        return None

    def complete(self) -> bool:
        if not self.answers:
            return False
        if not self.stream:
            return True
        # Stream mode: a 201 is followed by the final reply, which is never a 201.
        return any(a.code != 201 for a in self.answers)

    def expected(self) -> int:
        first = self.first
        return 2 if self.stream and first is not None and first.code == 201 else 1


class Link:
    """One user's connection to the broker, rebuilt whenever it is lost."""

    def __init__(self, url: str, user: str, sink: Callable[[Answer], None]) -> None:
        self.url = url
        self.user = user
        self.sink = sink
        self.generation = 0
        self.reconnects = 0
        self._up = asyncio.Event()
        self._lost: asyncio.Future[None] | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"rel-link:{self.user}")
        await asyncio.wait_for(self._up.wait(), 30)

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def ready(self) -> tuple[int, asyncio.Future[None]]:
        """Wait for a connection; its generation and a future done when it is lost."""
        while True:
            await self._up.wait()
            lost = self._lost
            if lost is not None and not lost.done():
                return self.generation, lost
            await asyncio.sleep(0.01)

    async def publish(self, req: Req, correlation_id: str) -> None:
        assert self._exchange is not None
        body = json.dumps({"method": req.method, "path": req.path, "data": req.data}).encode()
        await self._exchange.publish(
            aio_pika.Message(
                body, content_type="application/json", user_id=self.user,
                reply_to="amq.rabbitmq.reply-to", correlation_id=correlation_id,
                message_id=req.message_id, headers={"stream": True} if req.stream else {},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key="command", mandatory=True, timeout=10)

    async def _supervise(self) -> None:
        delay = 0.1
        while not self._closing:
            connection: AbstractConnection | None = None
            try:
                connection = await aio_pika.connect(
                    self.url, timeout=5,
                    client_properties={"connection_name": f"rel-load:{self.user}"})
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                replies = await channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
                await replies.consume(self._on_reply, no_ack=True)
                self._exchange = await channel.get_exchange("vmd.commands", ensure=False)
                self._channel = channel
                lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

                def gone(*_: object, lost: asyncio.Future[None] = lost) -> None:
                    if not lost.done():
                        lost.set_result(None)

                connection.close_callbacks.add(gone)
                channel.close_callbacks.add(gone)
                self.generation += 1
                if self.generation > 1:
                    self.reconnects += 1
                self._lost = lost
                self._up.set()
                delay = 0.1
                await lost
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
            finally:
                self._up.clear()
                if self._lost is not None and not self._lost.done():
                    self._lost.set_result(None)
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(connection.close(), 2)

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        body = json.loads(message.body)
        code = body.pop("code", None)
        assert code == message.headers.get("code"), (body, message.headers)
        self.sink(Answer(message.correlation_id or "", int(code), body, time.monotonic()))


@dataclass
class LoadFigures:
    requests: int = 0
    answers: int = 0
    retried: int = 0  # requests sent again after their connection was lost
    by_code: dict[int, int] = field(default_factory=dict)


class Load:
    """Requests from several users over their own links; every answer recorded."""

    def __init__(self, url_for: Callable[[str], str], fleet: list[VmInfo], timing: Timing,
                 *, seed: int = 7, answer_timeout: float = 90.0,
                 users: tuple[str, ...] = ("admin", "alice", "bob"),
                 retry_after: float | None = None) -> None:
        self.url_for = url_for
        self.fleet = fleet
        self.timing = timing
        self.rng = random.Random(seed)
        self.answer_timeout = answer_timeout
        # Also send a request again (the same message_id) when this long passed without
        # its answer, its connection up (test_ha.py: a client that retries on its own).
        self.retry_after = retry_after
        self.users = users
        self.links: dict[str, Link] = {}
        self.reqs: list[Req] = []
        self.by_cid: dict[str, Req] = {}
        self.stray: list[Answer] = []  # answers to no request of ours (must stay empty)
        self.tasks: dict[str, Req] = {}  # task_id -> the request that created it
        self._stop = asyncio.Event()

    async def __aenter__(self) -> Load:
        for user in self.users:
            link = Link(self.url_for(user), user, self._on_answer)
            await link.start()
            self.links[user] = link
        return self

    async def __aexit__(self, *exc: object) -> None:
        for link in self.links.values():
            await link.close()

    def _on_answer(self, answer: Answer) -> None:
        req = self.by_cid.get(answer.correlation_id)
        if req is None:
            self.stray.append(answer)
            return
        req.answers.append(answer)
        if answer.code == 201:
            self.tasks[str(answer.body.get("task_id"))] = req
        if req.complete():
            req.done.set()

    # -- one request ----------------------------------------------------------------------

    def new(self, user: str, op: str, method: str, path: str, data: dict[str, Any] | None = None,
            *, stream: bool = False, vm: str | None = None) -> Req:
        req = Req(uuid.uuid4().hex, user, op, method, path, data or {}, stream, vm)
        self.reqs.append(req)
        return req

    async def perform(self, req: Req) -> Req:
        link = self.links[req.user]
        req.sent = time.monotonic()
        deadline = req.sent + self.answer_timeout
        while True:
            _, lost = await link.ready()
            cid = f"{req.message_id}.{req.attempts}"
            req.attempts += 1
            self.by_cid[cid] = req
            try:
                await link.publish(req, cid)
            except Exception as exc:
                # Not confirmed: the connection went, or the channel was closed. Maybe sent;
                # the same message_id makes sending again safe.
                req.errors.append(f"publish: {exc!r}")
                await asyncio.sleep(0.05)
                continue
            waiter: asyncio.Future[Any] = asyncio.ensure_future(req.done.wait())
            waits: set[asyncio.Future[Any]] = {waiter, lost}
            left = max(0.0, deadline - time.monotonic())
            try:
                await asyncio.wait(waits, timeout=min(left, self.retry_after or left),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if req.done.is_set():
                return req
            if self.retry_after and not lost.done() and time.monotonic() < deadline:
                req.errors.append("no answer in time")
                continue
            if lost.done() and time.monotonic() < deadline:
                req.errors.append("connection lost")
                continue
            req.unanswered = True
            return req

    async def call(self, user: str, method: str, path: str,
                   data: dict[str, Any] | None = None) -> Answer:
        """One request (counted like the others); its answer."""
        req = await self.perform(self.new(user, "call", method, path, data))
        assert req.first is not None, f"no answer to {method} {path}"
        return req.first

    # -- the load --------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    async def run(self, *, concurrency: int, pause: float, stream_share: float = 0.3) -> None:
        """Workers send until `stop()`; each waits `pause` (± 50 %) between its requests."""
        self._stop.clear()
        workers = [asyncio.create_task(self._worker(i, pause, stream_share))
                   for i in range(concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()

    async def _worker(self, i: int, pause: float, stream_share: float) -> None:
        rng = random.Random(self.rng.random())
        while not self._stop.is_set():
            req = self._pick(rng, stream_share)
            await self.perform(req)
            await asyncio.sleep(pause * rng.uniform(0.5, 1.5))

    def _pick(self, rng: random.Random, stream_share: float) -> Req:
        user = rng.choice(self.users)
        mine = [vm for vm in self.fleet if user == "admin" or vm.user == user]
        vm = rng.choice(mine)
        name = vm.hostname if rng.random() < 0.7 else vm.uuid
        t = self.timing.stop_timeout
        op = rng.choices(
            ("list", "get", "task", "current", "start", "stop", "stop_force", "reboot"),
            weights=(8, 16, 8, 6, 16, 14, 5, 6))[0]
        base = f"/vm/{name}/status"
        stream = rng.random() < stream_share
        if op == "list":
            return self.new(user, op, "GET", "/vm/status", {"order_by": "-status,hostname"})
        if op == "get":
            return self.new(user, op, "GET", base, vm=vm.uuid)
        if op == "task":
            recent = [tid for tid, r in list(self.tasks.items())[-50:] if r.user == user]
            task_id = rng.choice(recent) if recent else "0-00000000-0000-4000-8000"
            return self.new(user, op, "GET", f"/task/{task_id}/status")
        if op == "current":
            return self.new(user, op, "GET", base + "/current", stream=stream, vm=vm.uuid)
        data: dict[str, Any] = {}
        if op == "stop":
            data = {"timeout": t}
        elif op == "stop_force":
            data = {"force": True, "timeout": t}
        elif op == "reboot":
            data = {"timeout": t}
        action = "stop" if op == "stop_force" else op
        return self.new(user, op, "PUT", f"{base}/{action}", data, stream=stream, vm=vm.uuid)

    async def drain(self, timeout: float) -> None:
        """Wait until every request sent is answered or given up."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(r.done.is_set() or r.unanswered for r in self.reqs if r.sent):
                return
            await asyncio.sleep(0.1)
