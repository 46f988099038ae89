"""`vmd daemon -c FILE` as a real process: exit codes, READY/STOPPING on a real notify socket,
the SIGTERM drain (requeued requests answered by the next instance), and SIGKILL mid-task
(state, tasks, stream subscribers and idempotency keys back; no VM stuck past its deadline).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vmd.bus import BusClient
from vmd.model import Reply, Request

from .conftest import FLEET, daemon_toml
from .harness import EventLog, FakeAgent, RawRequester, eventually, vm_uuid

VMD = Path(sys.executable).parent / "vmd"


def serving(message: str) -> bool:
    """A READY=1 of a daemon that serves: on a PostgreSQL store (VMD_TEST_STORE=postgresql)
    each daemon first sends READY=1 as a standby (STATUS=standby: ...), docs/ha.md."""
    return message.startswith("READY=1") and "STATUS=standby" not in message


class Notify:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.05)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def index(self, prefix: str) -> int:
        return next(i for i, m in enumerate(self.messages) if m.startswith(prefix))


@pytest.fixture
def notify() -> Iterator[Notify]:
    with tempfile.TemporaryDirectory(prefix="vmd-") as tmp:
        n = Notify(str(Path(tmp) / "notify"))
        try:
            yield n
        finally:
            n.close()


class Proc:
    """One `vmd daemon` subprocess, logging to a file."""

    def __init__(self, config: Path, log: Path, notify: Notify | None) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_USEC", "WATCHDOG_PID")}
        if notify is not None:
            env["NOTIFY_SOCKET"] = notify.path
        self.log = log
        self.notify = notify
        with log.open("ab") as out:  # the child has its own copy of the descriptor
            self.proc = subprocess.Popen(
                [str(VMD), "daemon", "-c", str(config)], env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.PIPE)

    async def ready(self, count: int = 1, timeout: float = 30.0) -> str:
        assert self.notify is not None
        await eventually(
            lambda: sum(serving(m) for m in self.notify.messages) >= count
            or self.proc.poll() is not None, timeout, "READY=1")
        assert self.proc.poll() is None, self.stderr()
        return [m for m in self.notify.messages if serving(m)][-1]

    async def wait(self, timeout: float = 30.0) -> int:
        return await asyncio.to_thread(self.proc.wait, timeout)

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode() if self.proc.poll() is not None else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
async def spawn(tmp_path: Path, amqp_url: str) -> AsyncIterator[Callable[..., Proc]]:
    procs: list[Proc] = []

    def start(notify: Notify | None = None, url: str | None = None, **daemon: Any) -> Proc:
        config = tmp_path / "vmd.toml"
        # info: at debug aio-pika logs every frame.
        config.write_text(daemon_toml(url or amqp_url, tmp_path / "vmd.sqlite3",
                                      log_level="info", **daemon))
        p = Proc(config, tmp_path / f"daemon-{len(procs)}.log", notify)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()


def test_configuration_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[broker]\nurl = "amqp://x@127.0.0.1/v"\n[daemon]\nshard = -1\n')
    done = subprocess.run([str(VMD), "daemon", "-c", str(bad)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "[daemon]" in lines[0], done.stderr


async def test_broker_unreachable_is_one_line_and_exit_1(tmp_path: Path, notify: Notify) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    # Under systemd the daemon waits for the broker unless connect_attempts bounds it
    # (tests/obs/test_obs_boot.py: the unbounded wait).
    config = tmp_path / "vmd.toml"
    config.write_text(daemon_toml(f"amqp://vmd:vmd@127.0.0.1:{port}/x", tmp_path / "s.sqlite3",
                                  log_level="info").replace(
        "[broker]\n", "[broker]\nconnect_attempts = 5\n", 1))
    p = Proc(config, tmp_path / "daemon.log", notify)
    assert await p.wait(60) == 1
    assert p.proc.stderr is not None
    lines = p.proc.stderr.read().decode().strip().splitlines()
    p.kill()
    assert len(lines) == 1 and "vmd daemon:" in lines[0] and "after 5 attempts" in lines[0], lines
    assert not any(serving(m) for m in notify.messages)


async def test_sigterm_drains_and_the_next_instance_answers_the_rest(
    spawn: Callable[..., Proc], notify: Notify, raw: Callable[..., Any],
) -> None:
    first = spawn(notify)
    # STATUS=0 VMs, ... (on PostgreSQL STATUS=active (epoch N): 0 VMs, ...)
    assert (await first.ready()).endswith("0 VMs, 0 nodes online")
    requester: RawRequester = await raw("admin")
    cids = [await requester.send({"method": "GET", "path": "/vm/status"}, message_id=f"m{i}")
            for i in range(10)]
    await requester.replies_for(cids[0])
    # A burst, with SIGTERM in the middle of it.
    burst = [requester.send({"method": "PUT", "path": f"/vm/x{i}.example.com/define"},
                            message_id=f"b{i}") for i in range(200)]
    sending = asyncio.gather(*burst)
    await asyncio.sleep(0.02)
    first.proc.send_signal(signal.SIGTERM)
    cids += await sending
    assert await first.wait() == 0
    stopping = notify.index("STOPPING=1")
    assert notify.index("READY=1") < stopping
    # The next instance answers whatever went back to the queue.
    second = spawn(notify)
    await second.ready(count=2)
    for cid in cids:
        await eventually(lambda c=cid: [r for r in requester.replies.get(c, ()) if r[0] != 503],
                         15, f"an answer to {cid}")
        answers = [r for r in requester.replies[cid] if r[0] != 503]
        assert len(answers) == 1, (cid, requester.replies[cid])
        assert answers[0][0] in (200, 404), answers
    second.proc.send_signal(signal.SIGTERM)
    assert await second.wait() == 0


async def test_sigkill_mid_task_then_restart(
    spawn: Callable[..., Proc], notify: Notify,
    make_agent: Callable[..., Awaitable[FakeAgent]],
    make_client: Callable[..., Awaitable[BusClient]], events: EventLog,
) -> None:
    first = spawn(notify, start_deadline=8)
    await first.ready()
    agent = await make_agent("node1")
    alice = await make_client("alice")
    await seed_remote(agent, alice)
    # Two starts: one the agent completes after the restart (its stream subscriber
    # survives), one nobody answers (it must expire, after the restart, once).
    finals: list[Reply] = []

    async def stream(hostname: str) -> None:
        request = Request("PUT", f"/vm/{hostname}/status/start")
        async for reply in alice.stream(request, message_id=f"start-{hostname}", timeout=10,
                                        final_timeout=30):
            finals.append(reply)

    streams = [asyncio.create_task(stream("web02.example.com")),
               asyncio.create_task(stream("zone01.example.com"))]
    tasks = {t.hostname: t for t in [await agent.next_task(), await agent.next_task()]}
    agent.auto_sync = False  # the node did not change: the re-sync finds nothing new
    first.proc.kill()
    first.proc.wait(10)
    second = spawn(notify, start_deadline=8)
    assert (await second.ready(count=2)).endswith("5 VMs, 1 nodes online")
    web02 = tasks["web02.example.com"]
    await agent.result(web02)
    await asyncio.wait_for(asyncio.gather(*streams), 30)
    by_task = {r.body["task_id"]: r for r in finals if r.code != 201}
    assert by_task[web02.task_id] == Reply(200, {
        "status": "SUCCESS", "task_id": web02.task_id,
        "result": {"returncode": 0, "message": "Successfully started VM web02.example.com"}})
    zone01 = tasks["zone01.example.com"]
    assert by_task[zone01.task_id].code == 410
    for task in (web02, zone01):
        await events.wait(lambda _, t=task: events.tasks_done(t.task_id))
        assert len(events.tasks_done(task.task_id)) == 1
    status = await alice.call(Request("GET", "/vm/status"))
    by_name = {vm["hostname"]: vm["status"] for vm in status.body["result"]}
    assert by_name["web02.example.com"] == "running"
    assert by_name["zone01.example.com"] == "stopped"
    # The idempotency key survived too.
    again = await alice.call(Request("PUT", "/vm/web02.example.com/status/start"),
                             message_id="start-web02.example.com")
    assert again == Reply(201, {"status": "PENDING", "result": None, "task_id": web02.task_id})
    second.proc.send_signal(signal.SIGTERM)
    assert await second.wait() == 0


async def test_restart_after_the_deadline_expires_before_ready(
    spawn: Callable[..., Proc], notify: Notify,
    make_agent: Callable[..., Awaitable[FakeAgent]],
    make_client: Callable[..., Awaitable[BusClient]], events: EventLog,
) -> None:
    first = spawn(notify, start_deadline=1)
    await first.ready()
    agent = await make_agent("node1")
    alice = await make_client("alice")
    await seed_remote(agent, alice)
    await agent.bus.stop_consuming()  # the task stays in the queue: never run
    reply = await alice.call(Request("PUT", "/vm/web02.example.com/status/start"))
    assert reply.code == 201
    first.proc.kill()
    first.proc.wait(10)
    await asyncio.sleep(1.2)  # past the deadline while no daemon runs
    second = spawn(notify, start_deadline=1)
    await second.ready(count=2)
    status = await alice.call(Request("GET", "/vm/web02.example.com/status"))
    assert status.body["result"]["status"] == "stopped"
    task = await alice.call(Request("GET", f"/task/{reply.body['task_id']}/status"))
    assert task.code == 410 and task.body["result"]["message"] == "Task deadline exceeded"
    await events.wait(lambda _: events.tasks_done(reply.body["task_id"]))
    # Ended once: a repeat would come from the start-up (the outbox, the expiry), which is
    # published before the daemon consumes; an event of a later request arrives after it.
    later = await alice.call(Request("PUT", "/vm/zone01.example.com/status/start"))
    assert later.code == 201
    await events.wait(lambda _: [e for e in events.status_changes(vm_uuid(5))
                                 if e["status"] == "starting"])
    assert len(events.tasks_done(reply.body["task_id"])) == 1
    second.proc.send_signal(signal.SIGTERM)
    assert await second.wait() == 0


async def seed_remote(agent: FakeAgent, client: BusClient) -> None:
    """The fleet, through the agent (the daemon is another process), until `client` sees
    it: alice's VMs listed (she owns all of FLEET but db01)."""
    for n, hostname, kw in FLEET:
        agent.add(n, hostname, **kw)
    await eventually(lambda: agent.syncs, what="the sync request of a node online")
    await agent.full_sync()
    loop = asyncio.get_running_loop()
    end = loop.time() + 10.0
    while True:
        listed = await client.call(Request("GET", "/vm/status"))
        if len(listed.body["result"]) == len(FLEET) - 1:
            return
        assert loop.time() < end, f"the fleet never appeared: {listed}"
