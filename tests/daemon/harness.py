"""What the daemon tests play: a fake node agent over the real bus, an event recorder, and a
raw requester, so the daemon is tested through its queues without the real agent.

- `FakeAgent`: consumes its node's task queue (orders decoded into a queue), heartbeats in
  the background, keeps a table of its VMs' states and answers every `sync_request` with a
  full sync of it, and sends results/observations when the test says so.
- `EventLog`: an exclusive queue bound to `vmd.events` with `#`; every event, in order.
- `RawRequester`: plain aio-pika requests with a named reply queue (not Direct Reply-to), so
  a test sees *every* reply to a correlation id, also after its own connection is cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from support.bus import send_report

from vmd.bus import (
    AgentTask,
    Bus,
    BusSettings,
    Delivery,
    FullSync,
    Heartbeat,
    ObservationReport,
    SyncRequest,
    TaskResult,
    agent_topology,
    decode_order,
    task_queue,
)
from vmd.bus.topology import COMMAND_ROUTING_KEY, COMMANDS_EXCHANGE, EVENTS_EXCHANGE
from vmd.model import (
    JsonObject,
    NodeName,
    Observation,
    OutcomeKind,
    Reply,
    TaskOutcome,
    VmUuid,
)

ALICE_OWNER = "8a1a4e6c-0000-4000-8000-000000000001"
BOB_OWNER = "8a1a4e6c-0000-4000-8000-000000000002"


def vm_uuid(n: int) -> VmUuid:
    return VmUuid(f"0e5a7c10-0000-4000-8000-{n:012d}")


async def eventually(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll `check()` until it returns something truthy; fail after `timeout`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.02)


@dataclass
class FakeVm:
    uuid: VmUuid
    hostname: str
    owner: str = ALICE_OWNER
    state: str = "stopped"
    brand: str = "kvm"
    change_time: float = field(default_factory=time.time)

    def obj(self) -> JsonObject:
        return {"uuid": self.uuid, "hostname": self.hostname, "alias": self.hostname.split(".")[0],
                "brand": self.brand, "owner_uuid": self.owner}

    def observation(self, node: str) -> Observation:
        return Observation(self.uuid, NodeName(node), self.state, self.change_time, self.obj())


class FakeAgent:
    """One node's agent, as far as the daemon can tell."""

    def __init__(self, settings: BusSettings, node: str, *, heartbeat: float = 0.1) -> None:
        self.node = NodeName(node)
        self.bus = Bus(settings, topology=agent_topology(node))
        self.vms: dict[str, FakeVm] = {}
        self.isos: tuple[str, ...] = ("debian-12.iso",)
        self.tasks: asyncio.Queue[AgentTask] = asyncio.Queue()
        self.syncs: list[SyncRequest] = []
        self.auto_sync = True
        self.interval = heartbeat
        self.beating = False
        self._beat: asyncio.Task[None] | None = None

    async def start(self, *, beat: bool = True) -> FakeAgent:
        await self.bus.start()
        await self.bus.consume(task_queue(self.node), self._on_order)
        if beat:
            self.start_heartbeats()
        return self

    def start_heartbeats(self) -> None:
        self.beating = True
        if self._beat is None:
            self._beat = asyncio.create_task(self._heartbeats())

    async def stop_heartbeats(self) -> None:
        self.beating = False
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
            self._beat = None

    async def close(self) -> None:
        await self.stop_heartbeats()
        await self.bus.close(drain_timeout=0.5)

    async def _heartbeats(self) -> None:
        started = time.time()
        while True:
            await send_report(self.bus, Heartbeat(self.node, time.time(), self.interval, started))
            await asyncio.sleep(self.interval)

    async def _on_order(self, delivery: Delivery) -> None:
        order = decode_order(delivery)
        await delivery.ack()
        if isinstance(order, SyncRequest):
            self.syncs.append(order)
            if self.auto_sync:
                await self.full_sync()
        else:
            self.tasks.put_nowait(order)

    def add(self, n: int, hostname: str, **kw: Any) -> FakeVm:
        vm = FakeVm(vm_uuid(n), hostname, **kw)
        self.vms[vm.uuid] = vm
        return vm

    async def full_sync(self) -> None:
        obs = tuple(vm.observation(self.node) for vm in self.vms.values())
        await send_report(self.bus, FullSync(self.node, time.time(), obs, self.isos))

    async def observe(self, vm: FakeVm, state: str | None) -> None:
        vm.change_time = time.time()
        if state is not None:
            vm.state = state
        obs = Observation(vm.uuid, self.node, state, vm.change_time, vm.obj())
        await send_report(self.bus, ObservationReport(self.node, time.time(), (obs,)))

    async def next_task(self, timeout: float = 10.0) -> AgentTask:
        return await asyncio.wait_for(self.tasks.get(), timeout)

    async def result(self, task: AgentTask, kind: OutcomeKind = OutcomeKind.SUCCESS,
                     message: str | None = None, rc: int = 0,
                     state: str | None = None) -> None:
        if message is None:
            verb = {"start": "started", "stop": "completed stop for",
                    "reboot": "completed reboot for", "current": "got"}[task.action.value]
            message = f"Successfully {verb} VM {task.hostname}"
        outcome = TaskOutcome(kind, rc, message, state=state,
                              change_time=time.time() if state else None)
        await send_report(self.bus, TaskResult(task.task_id, task.uuid, task.node, task.action,
                                               outcome, time.time()))


class EventLog:
    """Every event vmd publishes, in arrival order."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel) -> None:
        self.channel = channel
        self.events: list[tuple[str, JsonObject]] = []

    async def start(self) -> EventLog:
        exchange = await self.channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
        queue = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, "#")
        await queue.consume(self._on_event, no_ack=True)
        return self

    async def _on_event(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.events.append((message.routing_key or "", json.loads(message.body)))

    def of(self, prefix: str) -> list[JsonObject]:
        return [body for key, body in self.events if key.startswith(prefix)]

    def status_changes(self, uuid: str) -> list[JsonObject]:
        return [b for k, b in self.events if k.endswith(f".{uuid}.status_change")]

    def tasks_done(self, task_id: str) -> list[JsonObject]:
        return [b for k, b in self.events if k.endswith(f".{task_id}.done")]

    async def wait(self, check: Callable[[list[tuple[str, JsonObject]]], Any],
                   timeout: float = 10.0) -> Any:
        return await eventually(lambda: check(self.events), timeout, "events")


class RawRequester:
    """Requests over plain aio-pika with a named reply queue; every reply is kept."""

    def __init__(self, url: str, user: str) -> None:
        self.url = url
        self.user = user
        self.replies: dict[str, list[tuple[int | None, JsonObject]]] = {}
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        # Server-named (set in start): vmd answers only to queues the asker may read
        # (protocol.md §2), and a request without user_id names no asker.
        self.reply_queue = ""

    async def start(self) -> RawRequester:
        self._connection = await aio_pika.connect(self.url)
        channel = await self._connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        self.reply_queue = queue.name
        await queue.consume(self._on_reply, no_ack=True)
        self._exchange = await channel.get_exchange(COMMANDS_EXCHANGE, ensure=False)
        return self

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        code = (message.headers or {}).get("code")
        body = json.loads(message.body)
        self.replies.setdefault(message.correlation_id or "", []).append(
            (code if isinstance(code, int) else None, body))

    async def send(self, body: JsonObject | bytes, *, reply: bool = True,
                   message_id: str | None = None, stream: bool = False,
                   user_id: str | None = "default", correlation_id: str | None = None) -> str:
        assert self._exchange is not None
        cid = correlation_id or uuid.uuid4().hex
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        await self._exchange.publish(
            aio_pika.Message(
                raw, content_type="application/json", correlation_id=cid,
                message_id=message_id, reply_to=self.reply_queue if reply else None,
                user_id=self.user if user_id == "default" else user_id,
                headers={"stream": True} if stream else {},
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            COMMAND_ROUTING_KEY)
        return cid

    async def replies_for(self, cid: str, count: int = 1, timeout: float = 10.0) -> list[Reply]:
        await eventually(lambda: len(self.replies.get(cid, ())) >= count, timeout,
                         f"{count} replies to {cid}")
        out = []
        for code, body in self.replies[cid]:
            assert code == body.get("code"), (code, body)
            out.append(Reply(code, {k: v for k, v in body.items() if k != "code"}))
        return out


Request = Callable[..., Awaitable[Reply]]
