"""The node agent process: one runner that starts every concern and owns the shutdown order.

`Agent.run(shutdown)` (docs/architecture.md rule 3): the long-lived concerns are named tasks
of one `vmd.obs.tasks.Supervisor`, declared in `Agent._declare_tasks`; a crash of any of them
(or a fatal error the syncer or the task runner reports) is logged once and ends the wait
of step 4.

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
import functools
import time
from collections.abc import Callable

from vmd.bus import (
    Bus,
    BusFailed,
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
from vmd.obs.tasks import Supervisor

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

# The fatal errors an operator or the environment causes: one line, no traceback. Any other
# crash is an internal error (exit 1, its traceback in the one log line).
KNOWN_ERRORS: dict[type[BaseException], ExitCode] = {
    HostKeyRejected: ExitCode.CONFIG,  # an operator must act: systemd does not restart on 2
    SshConfigError: ExitCode.CONFIG,
    BusFailed: ExitCode.FAILED,  # the bus failed for good: a restart may cure it
}


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
        notify: systemd.Notifier | None = None,
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
        # `notify`: the process's Notifier, when its bus settings report retries through it.
        self.tasks = Supervisor("vmd agent", KNOWN_ERRORS, notify=notify)
        self.reporter = Reporter(self.bus, self.node, clock=clock)
        # The syncer and the task runner see their fatal errors (a rejected host key, a bug)
        # inside short-lived tasks of their own: they report them as crashes.
        self.syncer = Syncer(node=self.node, backend=self.backend, reporter=self.reporter,
                             poll_interval=settings.poll_interval,
                             on_fatal=functools.partial(self.tasks.fail, "syncer"), clock=clock)
        self.runner = TaskRunner(
            node=self.node, backend=self.backend, journal=self.journal,
            reporter=self.reporter, brand_of=self.syncer.brand_of,
            max_parallel=settings.max_parallel, on_sync_request=self.syncer.request,
            on_fatal=functools.partial(self.tasks.fail, "task-runner"),
            daemon_user=settings.daemon_user, refusals=Refusals(self.metrics.refused),
            clock=clock)
        self.consumer: Consumer | None = None
        self.ready = asyncio.Event()  # READY=1 was sent (tests wait on it)
        self._declare_tasks()

    def _declare_tasks(self) -> None:
        """The agent's long-lived tasks, in the order `run` starts them."""
        declare = self.tasks.declare
        # First, before the first connect, which may retry for a long while.
        declare("watchdog", systemd.watchdog_loop)
        # Once connected:
        declare("reporter", self.reporter.run)
        declare("loop-lag", lambda: monitor_loop_lag(observe=self.metrics.loop_lag.observe))
        declare("housekeeping", self._housekeeping)
        declare("syncer", self.syncer.run)
        # Returns when the shutdown closes the bus; raises BusFailed when it failed for good.
        declare("bus", self.bus.wait_closed, may_return=True)
        # Once the first full sync is confirmed and the task queue consumed:
        declare("heartbeat", lambda: heartbeat_loop(
            node=self.node, backend=self.backend, reporter=self.reporter,
            syncer=self.syncer, interval=self.settings.heartbeat_interval,
            started=self.started, clock=self.clock))

    # -- running ---------------------------------------------------------------------------

    async def run(self, shutdown: Shutdown) -> int:
        """Serve the node until `shutdown` (or a fatal error); return the exit code.

        Raises `JournalError` (state directory unusable) and `ConnectFailed` (no broker at
        start) before anything else runs.
        """
        self.journal.open()
        # Read before anything runs: started by the previous run, never finished.
        orphans = self.journal.unfinished()
        notify = self.tasks.notify
        try:
            notify.status("connecting to the broker")
            self.tasks.start("watchdog")
            try:
                # SIGTERM ends a wait for the broker (unbounded under systemd) at once.
                connected = await unless_stopped(self.bus.start(), shutdown.requested)
            except BaseException:
                await self.tasks.stop("watchdog")
                raise
            if not connected:
                await self.tasks.stop("watchdog")
                await self.bus.close()
                notify.stopping("stopped while waiting for the broker")
                log.info("stopped while waiting for the broker")
                return ExitCode.OK
            self.tasks.start("reporter", "loop-lag", "housekeeping", "syncer", "bus")
            self.syncer.request("agent start")
            notify.status(f"listing node {self.node}")
            try:
                await self._serve(shutdown, orphans)
            except Exception as exc:  # e.g. the broker refused our consumer: a bug to fix
                self.tasks.fail("start", exc)
            return await self._shutdown(shutdown)
        finally:
            self.journal.close()

    async def _serve(self, shutdown: Shutdown, orphans: list[Entry]) -> None:
        if not await self.tasks.reached(self.syncer.synced, shutdown.requested):
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
        self.tasks.start("heartbeat")
        self.tasks.notify.ready(f"serving node {self.node}")
        self.ready.set()
        log.info("agent ready", node=self.node, vms=len(self.syncer.inventory),
                 journal=len(self.journal))
        await self.tasks.until_stopped(shutdown.requested)

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
                self.tasks.notify.status(f"serving node {self.node}: {len(s.running)} "
                                         f"running, {s.waiting} waiting")

    # -- shutdown (docs/shutdown.md, "The node agent") -------------------------------------

    async def _shutdown(self, shutdown: Shutdown) -> int:
        crash = self.tasks.crash  # a crash from now on changes nothing below
        notify = self.tasks.notify
        drain = self.settings.drain_timeout if crash is None else min(
            5.0, self.settings.drain_timeout)
        log.info("shutting down", reason="fatal error" if crash else "signal")
        # 1. Stop taking tasks; requeue what waits; stop the periodic poll (the watch and
        #    the heartbeats go on: the node is still served).
        runner = self.runner
        runner.draining = True
        requeued = 0
        if self.consumer is not None:
            requeued += await self.consumer.cancel()
        for job in runner.scheduler.take_waiting():
            requeued += bool(await job.delivery.reject(requeue=True))
        await self.tasks.stop("syncer")
        running = len(runner.running())
        notify.status(f"draining: {running} vmadm running")
        # 2. Let running vmadm calls finish and report, up to drain_timeout.
        left = await runner.wait(drain, shutdown.hurry)
        # 3. Kill what did not finish; report it as interrupted.
        interrupted = 0
        if left:
            interrupted = runner.interrupt_all(_interrupted)
            log.warning("drain deadline: vmadm interrupted", interrupted=interrupted)
            notify.status(f"draining: {interrupted} vmadm interrupted, reporting")
            await runner.wait(10.0)
            await runner.cancel_all()
        # 4. Stop watching and beating; flush the reports; close the node connection.
        await self.tasks.stop("heartbeat")
        await self.syncer.stop_watching()
        flushed = await self.reporter.flush(5.0)
        if not flushed:
            log.warning("reports not confirmed at shutdown", pending=self.reporter.pending)
        await self.opened.aclose()
        # 5. The node's state is safe.
        notify.stopping("stopping: closing the broker connection")
        # 6. The broker connection last, then the rest (watchdog, reporter, loop-lag).
        await self.tasks.stop("housekeeping", "bus")
        await self.bus.close(drain_timeout=1.0)
        await self.tasks.stop()
        log.info("shutdown complete", requeued=requeued, interrupted=interrupted,
                 completed=runner.completed)
        return ExitCode.OK if crash is None else crash.code


def _interrupted(job: Job, seconds: float) -> str:
    return (f"vmd agent shutting down: vmadm {command_of(job.task)} interrupted after "
            f"{seconds:.0f} s")
