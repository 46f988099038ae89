"""Fixtures of the agent tests: the daemon's side of the agent protocol played with plain
`vmd.bus` calls, the agent in-process or as a real `vmd agent -c FILE` process, the vmadm
simulator, a systemd notify socket.

Node names are `node1`..`node9`: the clean slate of tests/conftest.py deletes their task
queues before every test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from node_agent.conftest import CTL, TIMESCALE, VMADM, ZONECFG, Sim, SshNode  # noqa: F401
from support.amqp import agent_user
from support.bus import send_order

from vmd.bus import (
    AgentReport,
    AgentTask,
    Bus,
    BusSettings,
    Delivery,
    ObservationReport,
    ResultBatch,
    SyncRequest,
    TaskResult,
    decode_report,
)
from vmd.bus.topology import DAEMON, REPORTS_QUEUE, node_tasks
from vmd.config import AgentSettings, MemorySettings
from vmd.model import Action, NodeName, TaskId, VmUuid
from vmd.node_agent.agent import Agent, Shutdown
from vmd.node_agent.driver import LocalRunner, Vmadm
from vmd.node_agent.driver.backend import Opened
from vmd.node_agent.driver.memory import MemoryNode

R = TypeVar("R", bound=AgentReport)
VMD = Path(sys.executable).parent / "vmd"
NODE = NodeName("node1")


def new_task_id() -> TaskId:
    return TaskId("0-" + str(uuidlib.uuid4())[:23])


# -- the daemon's side ------------------------------------------------------------------------


@dataclass
class Received:
    at: float  # time.time() when the test's consumer got it
    report: AgentReport


@dataclass
class DaemonSide:
    """Sends orders to the node's task queue and collects everything on the reports queue.

    `messages` is every report as it came; `received` is what the daemon learns, in order:
    a `ResultBatch` as its results, and the observations a result carries as an
    `ObservationReport` right before it (as the daemon applies them), so a test of what the
    agent reports does not depend on which message carried it."""

    bus: Bus
    node: NodeName = NODE
    messages: list[Received] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, delivery: Delivery) -> None:
        at, report = time.time(), decode_report(delivery)
        self.messages.append(Received(at, report))
        results = report.results if isinstance(report, ResultBatch) else (report,)
        for r in results:
            if isinstance(r, TaskResult) and r.observations:
                self.received.append(Received(at, ObservationReport(r.node, r.time,
                                                                    r.observations)))
            self.received.append(Received(at, r))
        await delivery.ack()
        self.changed.set()

    def of(self, kind: type[R]) -> list[R]:
        return [r.report for r in self.received if isinstance(r.report, kind)]

    async def wait(self, kind: type[R], predicate: Callable[[R], bool] = lambda _: True,
                   timeout: float = 15.0, after: int = 0) -> R:
        """The first report of `kind` (from index `after` on) that satisfies `predicate`."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            for r in self.received[after:]:
                if isinstance(r.report, kind) and predicate(r.report):
                    return r.report
            left = end - loop.time()
            assert left > 0, f"no {kind.__name__} as expected within {timeout} s"
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self.changed.wait()

    def task(self, uuid: str, action: str, *, hostname: str = "vm.example.com",
             deadline: float = 30.0, task_id: str | None = None, **params: Any) -> AgentTask:
        now = time.time()
        return AgentTask(TaskId(task_id or new_task_id()), VmUuid(uuid), hostname, self.node,
                         Action(action), {"hostname": hostname, **params}, now, now + deadline)

    async def send(self, task: AgentTask, *, now: float | None = None) -> AgentTask:
        await send_order(self.bus, task, now=now)
        return task

    async def run(self, uuid: str, action: str, *, wait: float = 20.0,
                  **kw: Any) -> TaskResult:
        """Send a task (`kw`: hostname, deadline, task_id, params) and wait for its result."""
        task = await self.send(self.task(uuid, action, **kw))
        return await self.result(task.task_id, wait)

    async def result(self, task_id: str, timeout: float = 20.0) -> TaskResult:
        return await self.wait(TaskResult, lambda r: r.task_id == task_id, timeout)

    async def sync_request(self, reason: str = "test") -> None:
        await send_order(self.bus, SyncRequest(self.node, reason))


@pytest.fixture
async def daemon(bus_settings: Callable[..., BusSettings]) -> AsyncIterator[DaemonSide]:
    # As the daemon: its user, the exchanges, the reports queue and the node's binding.
    bus = Bus(bus_settings("vmd", connection_name="test-daemon"),
              topology=DAEMON + node_tasks(NODE))
    side = DaemonSide(bus)
    await bus.start()
    await bus.consume(REPORTS_QUEUE, side.handle)
    yield side
    await bus.close(drain_timeout=1.0)


# -- the simulated node ---------------------------------------------------------------------


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    root = tmp_path / "node"
    root.mkdir()
    return Sim(root, {"VMADM_SIM_ROOT": str(root), "VMADM_SIM_TIMESCALE": TIMESCALE})


async def calls(sim: Sim, uuid: str | None = None) -> list[str]:
    return (await sim.ctl("calls", *([uuid] if uuid else []))).splitlines()


async def wait_calls(sim: Sim, predicate: Callable[[list[str]], bool], uuid: str | None = None,
                     timeout: float = 10.0) -> list[str]:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        lines = await calls(sim, uuid)
        if predicate(lines):
            return lines
        assert loop.time() < end, f"calls log never matched: {lines}"
        await asyncio.sleep(0.05)


def agent_settings(tmp_path: Path, sim: Sim | None = None, **overrides: Any) -> AgentSettings:
    values: dict[str, Any] = {
        "node": NODE,
        "vmadm": (str(VMADM),),
        "zonecfg": (str(ZONECFG),),
        "iso_dir": str(sim.iso_dir) if sim is not None else "/iso",
        "heartbeat_interval": 0.3,
        "poll_interval": 30.0,
        "metrics": "127.0.0.1:0",
        "max_parallel": 4,
        "drain_timeout": 10.0,
        "state_dir": tmp_path / "state",
    }
    values.update(overrides)
    return AgentSettings(**values)


def sim_backend(sim: Sim, node: NodeName = NODE) -> Opened:
    runner = LocalRunner(env=sim.env)
    return Opened(Vmadm(runner, node=node, vmadm=[str(VMADM)], iso_dir=str(sim.iso_dir),
                        zonecfg=[str(ZONECFG)]),
                  runner.aclose, runner)


@dataclass
class Running:
    agent: Agent
    shutdown: Shutdown
    task: asyncio.Task[int]

    async def stop(self, timeout: float = 30.0) -> int:
        self.shutdown.requested.set()  # what a first SIGTERM does (vmd.cli.runtime)
        async with asyncio.timeout(timeout):
            return await self.task


AgentFactory = Callable[..., Awaitable[Running]]


@pytest.fixture
async def make_agent(tmp_path: Path, bus_settings: Callable[..., BusSettings]
                     ) -> AsyncIterator[AgentFactory]:
    """`await make_agent(opened, **settings)`: an in-process agent, ready (READY sent)."""
    started: list[Running] = []

    async def make(opened: Opened, *, sim: Sim | None = None, wait_ready: bool = True,
                   bus: BusSettings | None = None, **overrides: Any) -> Running:
        settings = agent_settings(tmp_path, sim, **overrides)
        agent = Agent(settings, bus or bus_settings(agent_user(NODE), connection_name="test-agent"),
                      opened=opened, housekeeping_interval=0.05)
        shutdown = Shutdown()
        running = Running(agent, shutdown, asyncio.create_task(agent.run(shutdown)))
        started.append(running)
        if wait_ready:
            ready = asyncio.ensure_future(agent.ready.wait())
            await asyncio.wait({ready, running.task}, timeout=20,
                               return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if running.task.done():
                running.task.result()  # raises what stopped it
            assert agent.ready.is_set(), "agent not ready within 20 s"
        return running

    yield make
    for running in reversed(started):
        if not running.task.done():
            await running.stop()


def memory_backend(node: NodeName = NODE, **settings: Any) -> tuple[MemoryNode, Opened]:
    mem = MemoryNode(node, MemorySettings(**settings))

    async def nothing() -> None:
        return None

    return mem, Opened(mem, nothing)


# -- the agent as a real process ------------------------------------------------------------


class Notifications:
    """A bound AF_UNIX datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="vmd-notify-", dir="/tmp")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.messages: list[tuple[float, str]] = []

    def drain(self) -> list[str]:
        with contextlib.suppress(BlockingIOError):
            while True:
                self.messages.append((time.time(), self.sock.recv(4096).decode()))
        return [m for _, m in self.messages]

    async def wait_for(self, needle: str, timeout: float = 20.0) -> float:
        """When (time.time()) the first datagram containing `needle` arrived."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            self.drain()
            for at, message in self.messages:
                if needle in message.splitlines():
                    return at
            assert loop.time() < end, f"no {needle!r} notification: {self.messages}"
            await asyncio.sleep(0.02)

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
            os.rmdir(self.dir)


@pytest.fixture
def notifications() -> Any:
    n = Notifications()
    yield n
    n.close()


def write_config(path: Path, url: str, settings: dict[str, Any],
                 ssh: dict[str, Any] | None = None) -> Path:
    def value(v: Any) -> str:
        if isinstance(v, str | Path):
            return f'"{v}"'
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v).lower() if isinstance(v, bool) else str(v)

    lines = ["[broker]", f'url = "{url}"', "[agent]"]
    lines += [f"{k} = {value(v)}" for k, v in settings.items()]
    if ssh is not None:
        lines.append("[agent.ssh]")
        lines += [f"{k} = {value(v)}" for k, v in ssh.items()]
    lines += ["[log]", 'level = "debug"', 'format = "json"']
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class AgentProcess:
    config: Path
    env: dict[str, str]
    log_dir: Path
    proc: asyncio.subprocess.Process | None = None
    runs: int = 0

    async def start(self) -> None:
        self.runs += 1
        out = (self.log_dir / f"agent-{self.runs}.out").open("wb")
        err = (self.log_dir / f"agent-{self.runs}.err").open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            str(VMD), "agent", "-c", str(self.config), env=self.env, stdout=out, stderr=err,
            stdin=asyncio.subprocess.DEVNULL)
        out.close()
        err.close()

    def stdout(self) -> str:
        return (self.log_dir / f"agent-{self.runs}.out").read_text()

    def stderr(self) -> str:
        return (self.log_dir / f"agent-{self.runs}.err").read_text()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        async with asyncio.timeout(timeout):
            return await self.proc.wait()

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()


@pytest.fixture
async def agent_process(tmp_path: Path) -> AsyncIterator[Callable[..., AgentProcess]]:
    made: list[AgentProcess] = []

    def make(config: Path, env: dict[str, str] | None = None) -> AgentProcess:
        p = AgentProcess(config, {**os.environ, **(env or {})}, tmp_path)
        made.append(p)
        return p

    yield make
    for p in made:
        await p.kill()
