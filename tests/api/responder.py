"""A stand-in for the daemon: consumes `vmd.commands`, records each request, answers canned
replies (the daemon is not running yet; the lead adds end-to-end tests against it later).

What it answers (routed with the daemon's own `vmd.fsm.routing`):

- `GET /vm/status` -> 200 SUCCESS list; `GET /vm/<vm>/status` -> 200 SUCCESS object
  (`missing` -> 404 `VM not found`);
- `GET|PUT /vm/<vm>/status/current`, `PUT /vm/<vm>/status/start|stop|reboot` -> 201 PENDING
  with a new task id, and in stream mode a final reply `final_delay` seconds later
  (200 SUCCESS; VM `broken` -> 400 FAILURE; VM `slow` -> after `slow_delay`);
- `GET /task/<id>/status` -> 201 while the task runs, its final reply once it ended,
  404 for an unknown id;
- VM `silent` -> no answer at all; VM `lazy` -> the first answer after `lazy_delay`.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass
from typing import Any

from support.bus import send_reply

from vmd.bus import Bus, Delivery, decode_object
from vmd.bus.topology import STREAM_HEADER
from vmd.fsm.routing import Kind, route
from vmd.model import Reply

LIST_TASK_ID = "0-6f75849b-fdaf-4e6e-b580"
VM = "web01.example.com"

MESSAGES = {
    "start": "Successfully started VM {vm}",
    "stop": "Successfully completed stop for VM {vm}",
    "reboot": "Successfully completed reboot for VM {vm}",
}


def vm_status(vm: str) -> dict[str, Any]:
    return {"hostname": vm, "uuid": "8a1a4e6c-0000-4000-8000-0000000000a1", "alias": "web01",
            "status": "running", "status_change": "2026-11-27T05:01:02.345Z",
            "node_status": "online", "tasks": {}, "uptime": 42}


@dataclass(frozen=True, slots=True)
class Seen:
    method: str
    path: str
    data: dict[str, Any]
    user_id: str | None
    stream: bool
    message_id: str | None


class Responder:
    def __init__(self, bus: Bus, *, final_delay: float = 0.3, slow_delay: float = 30.0,
                 lazy_delay: float = 0.5) -> None:
        self.bus = bus
        self.final_delay = final_delay
        self.slow_delay = slow_delay
        self.lazy_delay = lazy_delay
        self.seen: list[Seen] = []
        self.running: dict[str, Reply] = {}  # task id -> its final reply, once it ends
        self.finished: dict[str, Reply] = {}
        self.finals_sent = 0
        self._counter = itertools.count(1)
        self._background: set[asyncio.Task[None]] = set()

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]

    async def handle(self, delivery: Delivery) -> None:
        request = decode_object(delivery.body)
        seen = Seen(request["method"], request["path"], request.get("data", {}),
                    delivery.user_id, delivery.header(STREAM_HEADER) is True,
                    delivery.message_id)
        self.seen.append(seen)
        first, final, delay = self.answer(seen)
        assert delivery.reply_to is not None
        if first is None:
            await delivery.ack()
            return
        if seen.path.startswith("/vm/lazy/"):
            self._spawn(self._reply_later(delivery, first, self.lazy_delay))
            return
        await send_reply(self.bus, delivery.reply_to, delivery.correlation_id, first)
        await delivery.ack()
        if final is not None:
            self._spawn(self._finish_later(delivery.reply_to, delivery.correlation_id,
                                           first.body["task_id"], final, delay, seen.stream))

    def answer(self, seen: Seen) -> tuple[Reply | None, Reply | None, float]:
        routed = route(seen.method, seen.path)
        assert not isinstance(routed, Reply), f"the gateway let {seen.path} through"
        if routed.vm == "silent":
            return None, None, 0.0
        if routed.kind is Kind.LIST:
            return Reply(200, {"status": "SUCCESS", "result": [vm_status(VM)],
                               "task_id": LIST_TASK_ID}), None, 0.0
        if routed.kind is Kind.TASK:
            if routed.task_id in self.finished:
                return self.finished[routed.task_id], None, 0.0
            if routed.task_id in self.running:
                return self._pending(routed.task_id), None, 0.0
            return Reply(404, {"detail": "Task does not exist (anymore)"}), None, 0.0
        if routed.vm == "missing":
            return Reply(404, {"detail": "VM not found"}), None, 0.0
        if routed.kind is Kind.STATUS:
            return Reply(200, {"status": "SUCCESS", "result": vm_status(routed.vm),
                               "task_id": f"0-{uuid.uuid4().hex[:8]}-0000-0000-0000"}), None, 0.0
        task_id = f"0-{next(self._counter):08x}-2600-423d-9f07"
        if routed.kind in (Kind.CURRENT_GET, Kind.CURRENT_PUT):
            final = Reply(200, {"status": "SUCCESS", "task_id": task_id, "result": {
                "hostname": routed.vm, "status": "running", "status_changed": False,
                "message": ""}})
        elif routed.vm == "broken":
            message = "Got bad return code (1). Error: vmadm failed"
            final = Reply(400, {"status": "FAILURE", "task_id": task_id, "result": {
                "returncode": 1, "message": "vmadm failed", "detail": message}})
        else:
            text = MESSAGES.get(routed.action, "Bad action").format(vm=routed.vm)
            final = Reply(200, {"status": "SUCCESS", "task_id": task_id,
                                "result": {"returncode": 0, "message": text}})
        self.running[task_id] = final
        delay = self.slow_delay if routed.vm == "slow" else self.final_delay
        return self._pending(task_id), final, delay

    @staticmethod
    def _pending(task_id: str) -> Reply:
        return Reply(201, {"status": "PENDING", "result": None, "task_id": task_id})

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reply_later(self, delivery: Delivery, reply: Reply, delay: float) -> None:
        await asyncio.sleep(delay)
        assert delivery.reply_to is not None
        await send_reply(self.bus, delivery.reply_to, delivery.correlation_id, reply)
        await delivery.ack()

    async def _finish_later(self, reply_to: str, correlation_id: str | None, task_id: str,
                            final: Reply, delay: float, stream: bool) -> None:
        await asyncio.sleep(delay)
        self.finished[task_id] = self.running.pop(task_id)
        if stream:
            await send_reply(self.bus, reply_to, correlation_id, final)
            self.finals_sent += 1

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
