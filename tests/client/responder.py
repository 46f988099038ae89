"""A stand-in for vmd on the real broker, and vmctl run as a real subprocess (helpers).

`Responder` is a `vmd.bus.Bus` consuming `vmd.commands` that answers canned replies the way
protocol.md says vmd does: a 201 PENDING for a task and, in stream mode, the task's final
reply after `task_seconds`; `GET /task/<id>/status` from its own task table; the first
answer again for a repeated `(user_id, message_id)`. It can also "lose" the next reply
(record the answer without sending it, as a reply sent just as the connection dropped), so
a test can cut the client's connection at that moment through the TCP proxy.

(The real daemon is tested end to end against vmctl and the client elsewhere.)
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.bus import send_reply

from vmd.bus import Bus, Delivery, decode_object
from vmd.model import JsonObject, Reply

VMCTL = Path(sys.executable).parent / "vmctl"

VMS: list[JsonObject] = [
    {
        "hostname": "web01.example.com",
        "uuid": "8a1a4e6c-0000-4000-8000-0000000000a1",
        "alias": "web01",
        "status": "running",
        "status_change": "2026-11-27T05:01:02.345Z",
        "node_status": "online",
        "tasks": {"0-a2327793-2600-423d-9f07": {"action": "stop", "method": "PUT",
                                                "time": "2026-11-27T05:01:02.345Z"}},
    },
    {
        "hostname": "db01.example.com",
        "uuid": "8a1a4e6c-0000-4000-8000-0000000000b2",
        "alias": "db01",
        "status": "stopped",
        "status_change": None,
        "node_status": "online",
        "tasks": {},
    },
]
_ACTION = re.compile(r"/vm/([^/]+)/status/(start|stop|reboot|current)/?").fullmatch
_TASK = re.compile(r"/task/([^/]+)/status/?").fullmatch
_VM = re.compile(r"/vm/([^/]+)/status/?").fullmatch
_DEFINE = re.compile(r"/vm/([^/]+)/define/?").fullmatch


def error(code: int, detail: str) -> Reply:
    return Reply(code, {"detail": detail})


@dataclass
class FakeTask:
    task_id: str
    final: Reply
    ends_at: float


@dataclass
class Seen:
    """One request as the responder received it."""

    body: JsonObject
    message_id: str | None
    user_id: str | None
    stream: bool
    repeat: bool

    @property
    def method(self) -> str:
        return str(self.body.get("method"))

    @property
    def path(self) -> str:
        return str(self.body.get("path"))


@dataclass
class Responder:
    bus: Bus
    task_seconds: float = 0.0
    seen: list[Seen] = field(default_factory=list)
    tasks: dict[str, FakeTask] = field(default_factory=dict)
    executed: int = 0  # requests answered for the first time (not repeats)
    lose_replies: int = 0  # how many of the next answers (first or repeated) to "lose"
    answer_delay: float = 0.0  # seconds before each first answer (a slow or busy vmd)
    lost: asyncio.Queue[Seen] = field(default_factory=asyncio.Queue)
    _answers: dict[tuple[str | None, str], Reply] = field(default_factory=dict)
    _jobs: set[asyncio.Task[None]] = field(default_factory=set)

    def requests(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        return [s for s in self.seen
                if (method is None or s.method == method) and (path is None or s.path == path)]

    async def handle(self, delivery: Delivery) -> None:
        job = asyncio.create_task(self._answer(delivery))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _answer(self, delivery: Delivery) -> None:
        body = decode_object(delivery.body)
        key = (delivery.user_id, delivery.message_id or uuid.uuid4().hex)
        stream = delivery.header("stream") is True
        first = self._answers.get(key)
        seen = Seen(body, delivery.message_id, delivery.user_id, stream, first is not None)
        self.seen.append(seen)
        assert delivery.reply_to is not None
        if first is None:
            self.executed += 1
            first = self._decide(body)
            self._answers[key] = first
        if self.answer_delay > 0:
            await asyncio.sleep(self.answer_delay)
        if self.lose_replies > 0:
            # As if the reply had been sent just as the requester's connection dropped.
            self.lose_replies -= 1
            await delivery.ack()
            self.lost.put_nowait(seen)
            return
        if stream and first.code == 201 and not seen.repeat:
            self._stream_final(delivery.reply_to, delivery.correlation_id, first)
        await send_reply(self.bus, delivery.reply_to, delivery.correlation_id, first)
        await delivery.ack()

    def _stream_final(self, reply_to: str, correlation_id: str | None, first: Reply) -> None:
        task = self.tasks[first.body["task_id"]]

        async def later() -> None:
            await asyncio.sleep(max(0.0, task.ends_at - asyncio.get_running_loop().time()))
            await send_reply(self.bus, reply_to, correlation_id, task.final)

        job = asyncio.create_task(later())
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    def _new_task(self, code: int, status: str, result: JsonObject) -> Reply:
        task_id = f"0-{uuid.uuid4()}"[:25]
        ends_at = asyncio.get_running_loop().time() + self.task_seconds
        final = Reply(code, {"status": status, "result": result, "task_id": task_id})
        self.tasks[task_id] = FakeTask(task_id, final, ends_at)
        return Reply(201, {"status": "PENDING", "result": None, "task_id": task_id})

    def _decide(self, body: Mapping[str, Any]) -> Reply:
        method, path = str(body.get("method")).upper(), str(body.get("path"))
        if path == "/boom":
            return error(503, "Service unavailable")
        if method not in ("GET", "PUT"):
            return error(405, f'Method "{method}" not allowed.')
        if path.rstrip("/") == "/vm/status":
            return Reply(200, {"status": "SUCCESS", "result": VMS, "task_id": "0-dummy"})
        if m := _TASK(path):
            task = self.tasks.get(m[1])
            if task is None:
                return error(404, "Task does not exist (anymore)")
            if asyncio.get_running_loop().time() < task.ends_at:
                return Reply(201, {"status": "PENDING", "result": None, "task_id": task.task_id})
            return task.final
        if m := _ACTION(path):
            vm, action = m[1], m[2]
            if vm == "missing":
                return error(404, "VM not found")
            if vm == "broken":
                result = {"returncode": 1, "message": "boom",
                          "detail": "Got bad return code (1). Error: boom"}
                return self._new_task(400, "FAILURE", result)
            message = f"Successfully completed {action} for VM {vm}"
            return self._new_task(200, "SUCCESS", {"returncode": 0, "message": message})
        if m := _VM(path):
            vm = next((v for v in VMS if m[1] in (v["hostname"], v["uuid"])), None)
            if vm is None:
                return error(404, "VM not found")
            return Reply(200, {"status": "SUCCESS", "result": vm, "task_id": "0-dummy"})
        if m := _DEFINE(path):
            return Reply(200, {"status": "SUCCESS", "result": {"hostname": m[1]},
                               "task_id": "0-dummy"})
        return error(404, "Not found")

    async def close(self) -> None:
        for job in list(self._jobs):
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


def vmctl_env(url: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a vmctl under test: no URL source of the user running the tests
    (VMD_URL, VMD_URL_FILE, ~/.config/vmctl), `url` as VMD_URL, then `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VMD_URL", "VMD_URL_FILE", "XDG_CONFIG_HOME")}
    env["XDG_CONFIG_HOME"] = "/nonexistent/vmctl-tests"
    if url is not None:
        env["VMD_URL"] = url
    env.update(extra or {})
    return env


async def run_vmctl(*args: str, url: str | None, timeout: float = 60.0,
                    env: Mapping[str, str] | None = None) -> Done:
    """vmctl as a real process (the event loop keeps serving the responder meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        str(VMCTL), *args, env=vmctl_env(url, env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Done(proc.returncode, out.decode(), err.decode())
