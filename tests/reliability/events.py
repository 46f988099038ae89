"""The event recorder: every event of `vmd.events`, kept through cuts, kills and broker restarts.

A subscriber that needs every event binds a durable queue (protocol.md §9), so the recorder
does: a durable named queue bound with `#`, declared before the daemon first starts (so it
sees every VM's events from `seq` 1), consumed with acks over its own reconnecting plain
aio-pika connection. What it checks, per VM (docs/reliability.md):

- **gaps**: the distinct `seq` values seen must be 1, 2, ... n without a hole: a hole is a
  status change vmd applied and never announced (a *lost change*);
- **chain**: each change's `previous` is the status of the change before it (seq - 1);
- **repeats** (same `seq`, same body) are allowed: a batch whose confirm was lost is
  published again (docs/bus.md §4); a same `seq` with another body is a conflict;
- **order**: a new `seq` never arrives after a higher one (events of one VM leave in the
  order vmd applied them);
- `task.<owner>.<id>.done`: repeats allowed, a task that ends twice differently is a conflict.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection


@dataclass
class EventChecks:
    events: int = 0
    vms: int = 0
    repeats: int = 0
    gaps: int = 0  # seq values missing: lost changes
    broken_chain: int = 0
    conflicts: int = 0
    out_of_order: int = 0
    tasks_done: int = 0
    task_conflicts: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def lost_changes(self) -> int:
        return self.gaps + self.broken_chain + self.conflicts + self.out_of_order


class EventRecorder:
    """Consumes `queue` (durable, bound to vmd.events `#`) until closed."""

    def __init__(self, url: str, queue: str) -> None:
        self.url = url
        self.queue = queue
        self.vm_events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.task_done: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.node_events: list[dict[str, Any]] = []
        self.count = 0
        self.reconnects = 0
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name="rel-events")
        await asyncio.wait_for(self._ready.wait(), 30)

    async def close(self, *, delete: bool = True) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if delete:
            connection = await aio_pika.connect(self.url, timeout=10)
            async with connection:
                channel = await connection.channel()
                await channel.queue_delete(self.queue)

    async def _supervise(self) -> None:
        first = True
        while True:
            connection: AbstractConnection | None = None
            try:
                connection = await aio_pika.connect(
                    self.url, timeout=5, client_properties={"connection_name": "rel-events"})
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=500)
                exchange = await channel.declare_exchange(
                    "vmd.events", aio_pika.ExchangeType.TOPIC, durable=True)
                queue = await channel.declare_queue(self.queue, durable=True)
                await queue.bind(exchange, "#")
                lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

                def gone(*_: object, lost: asyncio.Future[None] = lost) -> None:
                    if not lost.done():
                        lost.set_result(None)

                connection.close_callbacks.add(gone)
                channel.close_callbacks.add(gone)
                await queue.consume(self._on_message)
                if not first:
                    self.reconnects += 1
                first = False
                self._ready.set()
                await lost
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.2)
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(connection.close(), 2)

    async def _on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        body = json.loads(message.body)
        key = message.routing_key or ""
        self.count += 1
        if key.startswith("vm."):
            self.vm_events[body["uuid"]].append(body)
        elif key.startswith("task."):
            self.task_done[body["task_id"]].append(body)
        else:
            self.node_events.append(body)
        # Acked after it is recorded: a cut before the ack redelivers it (a repeat).
        with contextlib.suppress(Exception):
            await message.ack()

    def last_status(self, vm: str) -> str | None:
        events = self.vm_events.get(vm)
        if not events:
            return None
        return str(max(events, key=lambda e: e["seq"])["status"])

    def check(self) -> EventChecks:
        c = EventChecks(events=self.count, vms=len(self.vm_events))
        for vm, events in self.vm_events.items():
            by_seq: dict[int, dict[str, Any]] = {}
            highest = 0
            for e in events:
                seq = e["seq"]
                seen = by_seq.get(seq)
                if seen is not None:
                    if seen == e:
                        c.repeats += 1
                    else:
                        c.conflicts += 1
                        c.problems.append(f"{vm}: seq {seq} twice, differently: {seen} / {e}")
                    continue
                if seq < highest:
                    c.out_of_order += 1
                    c.problems.append(f"{vm}: seq {seq} after {highest}")
                by_seq[seq] = e
                highest = max(highest, seq)
            missing = [s for s in range(1, highest + 1) if s not in by_seq]
            if missing:
                c.gaps += len(missing)
                c.problems.append(f"{vm}: seq missing {missing[:10]} (of 1..{highest})")
            for seq in range(2, highest + 1):
                now, before = by_seq.get(seq), by_seq.get(seq - 1)
                if now is not None and before is not None and \
                        now["previous"] != before["status"]:
                    c.broken_chain += 1
                    c.problems.append(f"{vm}: seq {seq} previous {now['previous']!r} but seq "
                                      f"{seq - 1} was {before['status']!r}")
        for task_id, dones in self.task_done.items():
            c.tasks_done += 1
            if any(d != dones[0] for d in dones[1:]):
                c.task_conflicts += 1
                c.problems.append(f"task {task_id} ended differently: {dones}")
        return c
