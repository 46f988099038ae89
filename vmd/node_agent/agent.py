"""The node agent process: one runner that starts every concern and owns the shutdown order.

`Agent.run(shutdown)` (docs/architecture.md rule 3: each concern a named task, one runner):

1. open the journal; connect to the broker (`Bus` with `agent_topology(node)`: only the
   node's task queue, declared on every (re)connect; the daemon binds it and declares the
   rest, docs/security.md) as the node's own broker user;
2. start the reporter, the syncer (first full sync at once) and the housekeeping loop
   (broker reconnect -> full sync, metrics, deadlines of waiting tasks, STATUS);
3. once the first full sync is confirmed: report the tasks the previous run started and
   never finished (killed meanwhile: outcome unknown), consume the node's task queue, start
   the heartbeats, `READY=1`;
4. run until SIGTERM/SIGINT (`Shutdown`), a fatal error (SSH host key rejected, unusable SSH
   settings, an internal bug) or the bus failing for good;
5. shut down in the order of docs/shutdown.md ("The node agent"), return the exit code.

Exit codes (`vmd.obs.systemd.ExitCode`): 0 after SIGTERM (even when the drain hit its
deadline), 2 when the SSH settings cannot work or the node's host key is rejected (an
operator must act; systemd does not restart on 2), 1 for anything else fatal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from vmd.bus import (
    Bus,
    BusError,
    BusSettings,
    Consumer,
    agent_topology,
    task_queue,
    unless_stopped,
)
from vmd.config import AgentSettings
from vmd.model import NodeName, VmUuid
from vmd.obs import systemd
from vmd.obs.logging import get_logger
from vmd.obs.looplag import monitor_loop_lag
from vmd.obs.metrics import AgentMetrics
from vmd.obs.refusals import Refusals
from vmd.obs.systemd import ExitCode

from .driver.backend import Opened, open_backend
from .driver.errors import HostKeyRejected, SshConfigError
from .driver.metered import Metered
from .journal import Entry, Journal, journal_path
from .outcomes import command_of
from .reporter import Reporter
from .scheduler import Job
from .sync import Syncer, heartbeat_loop
from .tasks import TaskRunner

log = get_logger(__name__)

class Shutdown:
    """The two flags the signal handler sets (vmd.cli.runtime.run_until_signalled, the one
    place that decides which): `requested` asks for a shutdown, `hurry` cuts the current
    drain step short (docs/shutdown.md)."""

    def __init__(self, requested: asyncio.Event | None = None,
                 hurry: asyncio.Event | None = None) -> None:
        self.requested = requested or asyncio.Event()
        self.hurry = hurry or asyncio.Event()


class Agent:
    """One node's agent; `run()` once."""

    def __init__(
        self,
        settings: AgentSettings,
        bus_settings: BusSettings,
        *,
        opened: Opened | None = None,
        metrics: AgentMetrics | None = None,
        clock: Callable[[], float] = time.time,
        housekeeping_interval: float = 0.2,
    ) -> None:
        self.settings = settings
        self.node = NodeName(settings.node)
        self.bus_settings = bus_settings
        self.opened = opened or open_backend(settings)
        self.metrics = metrics or AgentMetrics()
        self.clock = clock
        self.housekeeping_interval = housekeeping_interval
        self.started = clock()
        self.backend = Metered(self.opened.backend, self.metrics)
        self.journal = Journal(journal_path(settings.state_dir, settings.node), clock=clock)
        self.bus = Bus(bus_settings, topology=agent_topology(self.node))
        self.reporter = Reporter(self.bus, self.node, clock=clock)
        self.syncer = Syncer(node=self.node, backend=self.backend, reporter=self.reporter,
                             poll_interval=settings.poll_interval, on_fatal=self._fatal,
                             clock=clock)
        self.runner = TaskRunner(
            node=self.node, backend=self.backend, journal=self.journal,
            reporter=self.reporter, brand_of=self.syncer.brand_of,
            max_parallel=settings.max_parallel, on_sync_request=self.syncer.request,
            on_fatal=self._fatal, daemon_user=settings.daemon_user,
            refusals=Refusals(self.metrics.refused), clock=clock)
        self.consumer: Consumer | None = None
        self.ready = asyncio.Event()  # READY=1 was sent (tests wait on it)
        self._fatal_error: BaseException | None = None
        self._fatal_event = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._status = ""

    # -- fatal errors ------------------------------------------------------------------------

    def _fatal(self, exc: BaseException) -> None:
        if self._fatal_error is None:
            self._fatal_error = exc
            if isinstance(exc, HostKeyRejected | SshConfigError):
                log.error(str(exc))
            else:
                log.error("internal error: the agent stops", exc_info=exc)
        self._fatal_event.set()

    def _start(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks[name] = task
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._fatal(exc)

    async def _stop_task(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            # Not `await task`: a task that failed was already handled by `_fatal`.
            await asyncio.wait({task})

    def _set_status(self, text: str) -> None:
        if text != self._status:
            self._status = text
            systemd.status(text)

    # -- running ---------------------------------------------------------------------------

    async def run(self, shutdown: Shutdown) -> int:
        """Serve the node until `shutdown` (or a fatal error); return the exit code.

        Raises `JournalError` (state directory unusable) and `ConnectFailed` (no broker at
        start) before anything else runs.
        """
        self.journal.open()
        # Read before anything runs: started by the previous run, never finished.
        orphans = self.journal.unfinished()
        try:
            self._set_status("connecting to the broker")
            # The watchdog first: the first connect may retry for a while.
            self._start("watchdog", systemd.watchdog_loop())
            try:
                # SIGTERM ends a wait for the broker (unbounded under systemd) at once.
                connected = await unless_stopped(self.bus.start(), shutdown.requested)
            except BaseException:
                await self._stop_task("watchdog")
                raise
            if not connected:
                await self._stop_task("watchdog")
                await self.bus.close()
                systemd.stopping("stopped while waiting for the broker")
                log.info("stopped while waiting for the broker")
                return ExitCode.OK
            self._start("reporter", self.reporter.run())
            self._start("loop-lag", monitor_loop_lag(observe=self.metrics.loop_lag.observe))
            self._start("housekeeping", self._housekeeping())
            self._start("syncer", self.syncer.run())
            self._start("bus", self._watch_bus())
            self.syncer.request("agent start")
            self._set_status(f"listing node {self.node}")
            try:
                await self._serve(shutdown, orphans)
            except Exception as exc:  # e.g. the broker refused our consumer: a bug to fix
                self._fatal(exc)
            return await self._shutdown(shutdown)
        finally:
            self.journal.close()

    async def _serve(self, shutdown: Shutdown, orphans: list[Entry]) -> None:
        if not await self._until(self.syncer.synced, shutdown):
            return
        # After the first full sync (reports keep their order): the daemon has the node's
        # truth when it reverts these tasks' VMs.
        if orphans:
            inventory = self.syncer.inventory
            n = self.runner.report_orphans(
                orphans, lambda uuid: str(inventory.get(VmUuid(uuid), {}).get("hostname")
                                          or uuid))
            log.warning("tasks of the previous run ended without an outcome: reported unknown",
                        tasks=n)
        self.consumer = await self.bus.consume(
            task_queue(self.node), self.runner.handle,
            prefetch=max(64, 4 * self.settings.max_parallel))
        self._start("heartbeat", heartbeat_loop(
            node=self.node, backend=self.backend, reporter=self.reporter,
            syncer=self.syncer, interval=self.settings.heartbeat_interval,
            started=self.started, clock=self.clock))
        systemd.ready(f"serving node {self.node}")
        self.ready.set()
        log.info("agent ready", node=self.node, vms=len(self.syncer.inventory),
                 journal=len(self.journal))
        await self._until(None, shutdown)

    async def _until(self, event: asyncio.Event | None, shutdown: Shutdown) -> bool:
        """Wait for `event` (None: forever); False when a shutdown or a fatal error came
        first."""
        waits = {asyncio.ensure_future(shutdown.requested.wait()),
                 asyncio.ensure_future(self._fatal_event.wait())}
        target = asyncio.ensure_future(event.wait()) if event is not None else None
        if target is not None:
            waits.add(target)
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return target is not None and event is not None and event.is_set() and not (
            shutdown.requested.is_set() or self._fatal_event.is_set())

    async def _watch_bus(self) -> None:
        try:
            await self.bus.wait_closed()
        except BusError as exc:
            self._fatal(exc)

    async def _housekeeping(self) -> None:
        """Broker reconnects -> full sync; counters -> metrics; waiting deadlines; STATUS."""
        generation = self.bus.generation
        seen = {"broker": 0, "ssh": 0, "events": 0}
        m = self.metrics
        while True:
            await asyncio.sleep(self.housekeeping_interval)
            current = self.bus.generation
            if current and current != generation:
                if generation:
                    log.info("broker reconnected: full sync", generation=current)
                    self.syncer.request("broker reconnect")
                generation = current
            for key, value, counter in (
                ("broker", self.bus.reconnects, m.broker_reconnects),
                ("ssh", self.opened.ssh_reconnects, m.ssh_reconnects),
                ("events", self.syncer.stream_restarts, m.events_restarts),
            ):
                if value > seen[key]:
                    counter.inc(value - seen[key])
                    seen[key] = value
            self.runner.expire_waiting()
            if self.ready.is_set() and not self.runner.draining:
                s = self.runner.scheduler
                self._set_status(f"serving node {self.node}: {len(s.running)} running, "
                                 f"{s.waiting} waiting")

    # -- shutdown (docs/shutdown.md, "The node agent") -------------------------------------

    async def _shutdown(self, shutdown: Shutdown) -> int:
        fatal = self._fatal_error
        drain = self.settings.drain_timeout if fatal is None else min(
            5.0, self.settings.drain_timeout)
        log.info("shutting down", reason="fatal error" if fatal else "signal")
        # 1. Stop taking tasks; requeue what waits; stop the periodic poll (the watch and
        #    the heartbeats go on: the node is still served).
        runner = self.runner
        runner.draining = True
        requeued = 0
        if self.consumer is not None:
            requeued += await self.consumer.cancel()
        for job in runner.scheduler.take_waiting():
            requeued += bool(await job.delivery.reject(requeue=True))
        await self._stop_task("syncer")
        running = len(runner.running())
        self._set_status(f"draining: {running} vmadm running")
        # 2. Let running vmadm calls finish and report, up to drain_timeout.
        left = await runner.wait(drain, shutdown.hurry)
        # 3. Kill what did not finish; report it as interrupted.
        interrupted = 0
        if left:
            interrupted = runner.interrupt_all(_interrupted)
            log.warning("drain deadline: vmadm interrupted", interrupted=interrupted)
            self._set_status(f"draining: {interrupted} vmadm interrupted, reporting")
            await runner.wait(10.0)
            await runner.cancel_all()
        # 4. Stop watching and beating; flush the reports; close the node connection.
        await self._stop_task("heartbeat")
        await self.syncer.stop_watching()
        flushed = await self.reporter.flush(5.0)
        if not flushed:
            log.warning("reports not confirmed at shutdown", pending=self.reporter.pending)
        await self.opened.aclose()
        # 5. The node's state is safe.
        systemd.stopping("stopping: closing the broker connection")
        # 6. The broker connection last, then the rest.
        await self._stop_task("housekeeping")
        await self._stop_task("bus")
        await self.bus.close(drain_timeout=1.0)
        for name in list(self._tasks):
            await self._stop_task(name)
        log.info("shutdown complete", requeued=requeued, interrupted=interrupted,
                 completed=runner.completed)
        if fatal is None:
            return ExitCode.OK
        if isinstance(fatal, HostKeyRejected | SshConfigError):
            return ExitCode.CONFIG
        return ExitCode.FAILED


def _interrupted(job: Job, seconds: float) -> str:
    return (f"vmd agent shutting down: vmadm {command_of(job.task)} interrupted after "
            f"{seconds:.0f} s")
