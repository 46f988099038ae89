"""The daemon's inner parts without a broker and without the wall clock: the fast mode of the
daemon's behaviour tests (docs/testing.md, "Fast mode"; issue 13's finite, fake-clock mode).

`FastDaemon.build(directory)` wires what `vmd.daemon.runner.Daemon.start` wires (store on
a SQLite file in `directory`, world, pipeline, core, nodes, intake, reports, the poison guard)
around a `FakeBus` (tests/support/fakebus.py) and a `FakeClock`, in the same order, and runs
the pipeline's two stages (`run_writer`, `run_publisher`) and the lister as tasks. Store
calls run inline on the event loop (`InlineExecutor`): the writer thread's only job is to
keep the loop free, and a test wants the write done when its step returns.

Inputs go in through the entry points the broker's consumers call (`Intake.handle`,
`Reports.handle`, both wrapped by the guard as in the runner), and `idle()` runs the pipeline
until everything decided is stored, published and settled. The periodic loops are not run:
`tick()` does once what one round of each does (deadline expiry, the node monitor,
housekeeping's forgetting), at the fake clock's time. So "nothing happens before the
deadline" is `clock.advance(...)`, `tick()`, and an assertion: no sleep, nothing to wait for.

What this does not cover is the I/O shell (vmd.bus, the consumers' prefetch, reconnects,
the runner's start-up and drain order): the broker tests in tests/daemon do.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.amqp import agent_user, auth_agents_toml
from support.fakebus import FakeBus
from support.postgres import daemon_store
from vmd import config
from vmd.bus import AgentTask, Delivery, FullSync, Heartbeat, ObservationReport, TaskResult
from vmd.daemon.auth import AgentUsers, Principals
from vmd.daemon.commit import Pipeline
from vmd.daemon.core import Core
from vmd.daemon.intake import Intake
from vmd.daemon.nodes import Nodes
from vmd.daemon.options import Options, bus_settings
from vmd.daemon.outbox import still_due
from vmd.daemon.poison import Guard
from vmd.daemon.reports import Reports
from vmd.fsm import FsmSettings, TaskBook, VmIndex, World, task_id_factory
from vmd.model import (
    JsonObject,
    NodeName,
    Observation,
    OutcomeKind,
    Reply,
    TaskOutcome,
    VmUuid,
)
from vmd.obs.metrics import DaemonMetrics
from vmd.obs.systemd import Notifier
from vmd.store import Store

ALICE_OWNER = "8a1a4e6c-0000-4000-8000-000000000001"
BOB_OWNER = "8a1a4e6c-0000-4000-8000-000000000002"
# A broker URL nothing listens on: the settings need one, nothing connects to it.
NO_BROKER = "amqp://vmd:vmd@127.0.0.1:9/none"


class FakeClock:
    """The daemon's POSIX clock, frozen until the test moves it (`advance`). It starts at the
    real time, so records look like today's, and never moves on its own."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class InlineExecutor(concurrent.futures.Executor):
    """Runs each store call at once, in the caller's thread (see the module docstring)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
               ) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the awaiting caller
            future.set_exception(exc)
        return future


def vm_uuid(n: int) -> VmUuid:
    return VmUuid(f"0e5a7c10-0000-4000-8000-{n:012d}")


def daemon_toml(url: str, store: Path, *, log_level: str = "debug", **daemon: Any) -> str:
    """The settings of a test daemon on broker `url` (tests/daemon/conftest.py's too)."""
    values: dict[str, Any] = {
        "store": daemon_store(store), "metrics": "127.0.0.1:0", "heartbeat_interval": 0.3,
        "reconcile_interval": 600, "drain_timeout": 3, "prefetch": 64,
        "no_shutdown": ["internal.example.com"],
    }
    values.update(daemon)
    body = "\n".join(f"{k} = {_toml(v)}" for k, v in values.items())
    return f"""\
[broker]
url = "{url}"

[daemon]
{body}

[auth]
admins = ["admin"]
[auth.owners]
alice = ["{ALICE_OWNER}"]
bob = ["{BOB_OWNER}"]
{auth_agents_toml()}
[log]
level = "{log_level}"
format = "json"
"""


def settings_toml(store: Path, **daemon: Any) -> str:
    """The same settings with no broker to reach (the fast mode's)."""
    return daemon_toml(NO_BROKER, store, log_level="info",
                       **{"heartbeat_interval": 10.0, **daemon})


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


@dataclass
class Vm:
    """One VM of a fake node, as its agent would report it."""

    uuid: VmUuid
    hostname: str
    owner: str = ALICE_OWNER
    state: str = "stopped"
    brand: str = "kvm"

    def obj(self) -> JsonObject:
        return {"uuid": self.uuid, "hostname": self.hostname,
                "alias": self.hostname.split(".")[0], "brand": self.brand,
                "owner_uuid": self.owner}


# The fleet of tests/daemon/conftest.py's `cloud`, on node1.
FLEET = (
    (1, "web01.example.com", {"state": "running"}),
    (2, "web02.example.com", {"state": "stopped"}),
    (3, "db01.example.com", {"state": "running", "owner": BOB_OWNER}),
    (4, "internal.example.com", {"state": "running"}),
    (5, "zone01.example.com", {"state": "stopped", "brand": "joyent"}),
)


class FastDaemon:
    """The daemon's parts on a fake bus and a fake clock (module docstring)."""

    def __init__(self, path: Path, clock: FakeClock, options: Options, daemon: dict[str, Any]
                 ) -> None:
        self.path = path
        self.clock = clock
        self.options = options
        self._daemon_keys = daemon
        self._tasks: list[asyncio.Task[None]] = []
        self.fleet: dict[str, Vm] = {}  # what `seed` reported, by hostname

    @classmethod
    async def build(cls, tmp_path: Path, *, clock: FakeClock | None = None,
                    opts: dict[str, Any] | None = None, **daemon: Any) -> FastDaemon:
        """Parts for `[daemon]` keys `daemon` and `Options` values `opts` (the clock is
        `clock`), store in `tmp_path`, started."""
        clock = clock or FakeClock()
        fast = cls(tmp_path, clock, Options(clock=clock, **(opts or {})), daemon)
        await fast.start()
        return fast

    async def start(self) -> None:
        """`Daemon.start`'s wiring and order, without the broker and the loops."""
        config_file = self.path / "vmd.toml"
        config_file.write_text(settings_toml(self.path / "vmd.sqlite3", **self._daemon_keys))
        self.settings = settings = config.load(config_file, sections=("broker", "daemon"))
        ds = settings.daemon
        assert ds is not None
        options, clock = self.options, self.clock
        self.store = store = Store.open(ds.store, history_keep=ds.history_keep,
                                        history_retention=ds.history_retention)
        now = clock()
        fleet = store.load_fleet(now)
        outbox = store.load_outbox()
        nodes = fleet.nodes
        self.world = world = World(
            vms=VmIndex(fleet.vms.values()), tasks=TaskBook(fleet.tasks.values()), nodes=nodes,
            settings=FsmSettings(shard=ds.shard, no_shutdown=ds.no_shutdown,
                                 start_deadline=ds.start_deadline, stop_grace=ds.stop_grace),
            new_task_id=task_id_factory(ds.shard),
        )
        fleet.vms.clear()
        self.metrics = metrics = DaemonMetrics()
        # Never connects: no retry to report, and no Notifier of a process to report it to.
        self.bus = bus = FakeBus(bus_settings(settings, options, Notifier()))
        self.pipeline = pipeline = Pipeline(
            store=store, bus=bus, executor=InlineExecutor(),  # type: ignore[arg-type]
            metrics=metrics, clock=clock, retry_delay=0.0)
        pipeline.declared(list(nodes))
        self.core = core = Core(world=world, idempotency=fleet.idempotency, options=options,
                                metrics=metrics, pipeline=pipeline,
                                max_records=ds.max_idempotency_records)
        self.nodes = Nodes(nodes=nodes, pipeline=pipeline, metrics=metrics,
                           heartbeat_interval=ds.heartbeat_interval, maintenance=ds.maintenance)
        self.intake = Intake(core=core, principals=Principals(settings.auth), pipeline=pipeline,
                             store=store, metrics=metrics, clock=clock,
                             max_pending_tasks=ds.max_pending_tasks)
        self.reports = Reports(core=core, nodes=self.nodes, pipeline=pipeline, metrics=metrics,
                               clock=clock, agents=AgentUsers(settings.auth),
                               daemon_user=bus.settings.user)
        core.restore(fleet.tasks.values())
        core.transitional.seed(world.vms, now)
        core.cool(now)
        fleet.idempotency.clear()
        self.nodes.restore(now)
        self.expired_at_start = core.expire_due(now)
        pipeline.replay(outbox, due=lambda order: still_due(order, world, now))
        self._tasks = [asyncio.create_task(pipeline.run_writer()),
                       asyncio.create_task(pipeline.run_publisher()),
                       asyncio.create_task(self.intake.lister.run())]
        guard = Guard(pipeline=pipeline, store=store, clock=clock, metrics=metrics)
        self.on_command = guard.wrap(self.intake.handle)
        self.on_report = guard.wrap(self.reports.handle)
        # Published before consuming starts, as `Daemon.start` waits for it: the replayed
        # outbox and the expiries decided above.
        await self.idle()

    async def stop(self) -> None:
        """Cancel the stages and close the store (what is decided but not written is lost,
        as in a crash: `idle()` first for a clean stop)."""
        await self.pipeline.abandon()  # a publish in progress (runner.Daemon.abort)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self.store.close()

    async def restart(self) -> None:
        """A new process on the same store file and clock, in place: every part is built
        again from the store (the bus's records start empty)."""
        await self.idle()
        await self.stop()
        await self.start()

    # -- driving it ------------------------------------------------------------------------

    async def idle(self) -> None:
        """Run until idle: everything decided so far is stored, published and settled (and
        the lists in hand answered). Deterministic: no timer is waited for."""
        await self.intake.lister.join()
        await self.pipeline.flush()

    async def tick(self) -> None:
        """One round of the periodic loops at the clock's time (vmd.daemon.deadlines,
        .nodes, .reconcile's housekeeping but its purge), then `idle()`."""
        now = self.clock()
        self.core.expire_due(now)
        self.nodes.check(now)
        self.core.forget_ended(now)
        self.core.cool(now)
        self.core.transitional.export(now)
        await self.idle()

    async def send(self, delivery: Delivery) -> Delivery:
        """Hand a `vmd.commands` delivery to the intake, as its consumer does; `idle()`."""
        await self.on_command(delivery)
        await self.idle()
        return delivery

    async def call(self, user: str | None, method: str, path: str,
                   data: JsonObject | None = None, **kw: Any) -> Reply:
        """One request and its first reply (the test fails if there is none)."""
        delivery = await self.send(self.bus.request(user, method, path, data, **kw))
        replies = self.bus.replies(delivery.correlation_id or "")
        assert replies, f"no reply to {method} {path}"
        return replies[0]

    async def report(self, report: Any, user: str | None = None) -> Delivery:
        """Hand an agent report to the report handler (from its node's agent); `idle()`."""
        sender = user or agent_user(getattr(report, "node", None) or report.task.node)
        delivery = self.bus.report(report, sender)
        await self.on_report(delivery)
        await self.idle()
        return delivery

    # -- playing the agent of a node -------------------------------------------------------

    async def sync(self, node: str, vms: list[Vm], isos: tuple[str, ...] = ("debian-12.iso",)
                   ) -> None:
        now = self.clock()
        obs = tuple(Observation(vm.uuid, NodeName(node), vm.state, now, vm.obj()) for vm in vms)
        await self.report(FullSync(NodeName(node), now, obs, isos))

    async def seed(self, node: str = "node1") -> list[Vm]:
        """The `cloud` fleet on `node`, by a full sync (which makes the node online)."""
        vms = [Vm(vm_uuid(n), hostname, **kw) for n, hostname, kw in FLEET]
        self.fleet = {vm.hostname: vm for vm in vms}
        await self.sync(node, vms)
        return vms

    async def heartbeat(self, node: str = "node1", interval: float = 10.0) -> None:
        now = self.clock()
        await self.report(Heartbeat(NodeName(node), now, interval, now))

    async def observe(self, node: str, vm: Vm, state: str | None) -> None:
        now = self.clock()
        if state is not None:
            vm.state = state
        obs = Observation(vm.uuid, NodeName(node), state, now, vm.obj())
        await self.report(ObservationReport(NodeName(node), now, (obs,)))

    def tasks(self, node: str = "node1") -> list[AgentTask]:
        """The tasks sent to `node`'s agent so far (sync requests left out)."""
        return [o for o in self.bus.orders(node) if isinstance(o, AgentTask)]

    def task_result(self, task: AgentTask, kind: OutcomeKind = OutcomeKind.SUCCESS,
                    message: str | None = None, rc: int = 0,
                    state: str | None = None) -> TaskResult:
        """The result the node's agent sends for `task` (as tests/daemon/harness.py's
        `FakeAgent` does)."""
        if message is None:
            verb = {"start": "started", "stop": "completed stop for",
                    "reboot": "completed reboot for", "current": "got"}[task.action.value]
            message = f"Successfully {verb} VM {task.hostname}"
        now = self.clock()
        outcome = TaskOutcome(kind, rc, message, state=state,
                              change_time=now if state else None)
        return TaskResult(task.task_id, task.uuid, task.node, task.action, outcome, now)

    async def result(self, task: AgentTask, kind: OutcomeKind = OutcomeKind.SUCCESS,
                     message: str | None = None, rc: int = 0,
                     state: str | None = None) -> Delivery:
        """The node's agent reports `task` finished; `idle()`."""
        return await self.report(self.task_result(task, kind, message, rc, state))

    def vm(self, hostname: str) -> Any:
        return self.world.vms.by_hostname[hostname]
