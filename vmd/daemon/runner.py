"""The daemon's lifecycle: start-up in order, the long-lived tasks, and the shutdown drain.

`Daemon.start` (each step before the next; the long-lived tasks it starts are declared in
`Daemon._declare_tasks`, on one `vmd.obs.tasks.Supervisor`):
1. serve `/metrics` (`[daemon] metrics`; port 0 = any free port, the bound address logged);
2. on a PostgreSQL store, wait as a standby until the lease is ours (docs/ha.md); open the
   store and load the fleet (in the writer thread); build the `World`; `gc.freeze()` once
   it is built (measured +60 % decisions/s with a large fleet);
3. re-arm every pending task's deadline and decide the expiry of those already due, apply
   `[daemon] maintenance`, queue the outbox the store still holds (published before any
   turn: vmd.daemon.commit), start the commit pipeline;
4. connect (declaring the topology, and a task queue per known node);
5. ask every known node for a full sync, so in-flight tasks and anything missed while vmd
   was down reconcile, wait until the outbox and the expiries above are published, then
   register the consumers (reports, then commands: docs/bus.md §6) and start consuming;
6. start the loops (deadlines, node monitor, reconcile, housekeeping, watchdog), then
   `READY=1` with `STATUS=<n> VMs, <k> nodes online`.

`Daemon.shutdown` follows docs/shutdown.md: the signal handler (vmd.cli.runtime) only sets
an event; this stops consuming and the producers, finishes the requests in hand up to
`[daemon] drain_timeout` (a second signal cuts the wait), requeues what was answered 503
and held, closes the store, `STOPPING=1`, closes the broker connection last, and exits 0.

Exit codes (`serve`, `vmd.obs.systemd.ExitCode`): 0 after a drain; 2 for a store the
operator must fix; 1 when the broker cannot be reached at start or the metrics address
cannot be served (systemd restarts the unit), and when a long-lived task crashes or the bus
fails for good: the supervisor logs the one reason (an internal error at critical, with its
traceback: habit 10), the daemon stops without draining (`abort`) and exits 1; 3 when it
lost its lease on a PostgreSQL store (it exits at once, and comes back as a standby:
docs/ha.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import sys
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor

from vmd.bus import (
    COMMANDS_QUEUE,
    DAEMON,
    REPORTS_QUEUE,
    Bus,
    BusFailed,
    ConnectFailed,
    Consumer,
    node_tasks,
    unless_stopped,
)
from vmd.config import Settings
from vmd.daemon.auth import AgentUsers, Principals
from vmd.daemon.commit import Pipeline
from vmd.daemon.core import Core
from vmd.daemon.deadlines import run_deadlines
from vmd.daemon.intake import Intake
from vmd.daemon.leadership import Leadership, bus_link
from vmd.daemon.nodes import Nodes, run_node_monitor
from vmd.daemon.options import Options, bus_settings
from vmd.daemon.outbox import still_due
from vmd.daemon.poison import Guard
from vmd.daemon.reconcile import run_housekeeping, run_reconcile
from vmd.daemon.reports import Reports
from vmd.fsm import FsmSettings, TaskBook, VmIndex, World, task_id_factory
from vmd.obs import systemd
from vmd.obs.logging import get_logger, stderr_text
from vmd.obs.looplag import monitor_loop_lag
from vmd.obs.metrics import DaemonMetrics
from vmd.obs.metrics_http import MetricsServeError, MetricsServer, serve_metrics
from vmd.obs.systemd import ExitCode
from vmd.obs.tasks import Supervisor
from vmd.store import Fence, Store, StoreError, StoreUnavailable
from vmd.store.target import PostgresUrl, parse_target

log = get_logger(__name__)


class StartupError(Exception):
    """The daemon cannot start; one line for the operator and the exit code."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


class Daemon:
    """One running daemon: its state, its bus, its pipeline and its long-lived tasks."""

    # Built by `start`, in its order (each needs the loaded store and fleet, or the one
    # before it); declared here so that every attribute of a daemon is listed in one place.
    store: Store
    world: World
    bus: Bus
    pipeline: Pipeline
    core: Core
    nodes: Nodes
    intake: Intake
    reports: Reports

    def __init__(self, settings: Settings, options: Options | None = None) -> None:
        if settings.daemon is None or settings.broker is None:
            raise ValueError("the daemon needs [broker] and [daemon] settings")
        self.settings = settings
        self.daemon_settings = settings.daemon
        self.options = options or Options()
        self.clock = self.options.clock
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vmd-store")
        self.metrics = DaemonMetrics()
        self.tasks = Supervisor(
            "vmd daemon", {BusFailed: ExitCode.FAILED, StoreUnavailable: ExitCode.FAILED})
        self._reports: Consumer | None = None  # the reports consumer, once registered
        self._declare_tasks()
        self.metrics_server: MetricsServer | None = None
        self.leadership: Leadership | None = None  # with a PostgreSQL store (docs/ha.md)
        self.running = False

    # -- start ------------------------------------------------------------------------------

    async def start(self, stop: asyncio.Event | None = None) -> None:
        """Load, connect, consume; `stop` (SIGTERM) ends a wait for the broker (exit 0)."""
        ds, options = self.daemon_settings, self.options
        loop = asyncio.get_running_loop()
        try:
            self._serve_metrics()  # first: a standby serves /metrics too
            fence = await self._lead(stop)
            self.store = await loop.run_in_executor(self.executor, functools.partial(
                Store.open, ds.store, history_keep=ds.history_keep,
                history_retention=ds.history_retention, fence=fence))
        except (StoreError, StartupError) as exc:
            await self.tasks.stop()
            if self.metrics_server is not None:
                await asyncio.to_thread(self.metrics_server.close)
            self.executor.shutdown(wait=False)
            if isinstance(exc, StartupError):
                raise
            raise StartupError(str(exc), ExitCode.CONFIG) from None
        now = self.clock()
        fleet = await loop.run_in_executor(self.executor, self.store.load_fleet, now)
        outbox = await loop.run_in_executor(self.executor, self.store.load_outbox)
        nodes = fleet.nodes
        self.world = World(
            vms=VmIndex(fleet.vms.values()), tasks=TaskBook(fleet.tasks.values()), nodes=nodes,
            settings=FsmSettings(shard=ds.shard, no_shutdown=ds.no_shutdown,
                                 start_deadline=ds.start_deadline, stop_grace=ds.stop_grace),
            new_task_id=task_id_factory(ds.shard),
        )
        fleet.vms.clear()  # the index holds them
        metrics = self.metrics
        metrics.vm_status.reset(vm.status.value for vm in self.world.vms)
        metrics.node_status.reset(node.status.value for node in nodes.values())
        metrics.tasks_in_flight.set(len(fleet.tasks))

        topology = DAEMON
        for name in sorted(nodes):
            topology = topology + node_tasks(name)
        link, checked = bus_link(bus_settings(self.settings, options, self.tasks.notify),
                                 self.leadership)
        self.bus = Bus(link, topology=topology, fence=checked)
        self.pipeline = Pipeline(store=self.store, bus=self.bus, executor=self.executor,
                                 metrics=metrics, clock=self.clock,
                                 retry_delay=options.retry_delay)
        self.pipeline.declared(list(nodes))
        self.core = Core(world=self.world, idempotency=fleet.idempotency, options=options,
                         metrics=metrics, pipeline=self.pipeline,
                         max_records=ds.max_idempotency_records)
        self.nodes = Nodes(nodes=nodes, pipeline=self.pipeline, metrics=metrics,
                           heartbeat_interval=ds.heartbeat_interval,
                           maintenance=ds.maintenance)
        self.intake = Intake(core=self.core, principals=Principals(self.settings.auth),
                             pipeline=self.pipeline, store=self.store, metrics=metrics,
                             clock=self.clock,
                             debug=self.settings.log.level == "debug",
                             max_pending_tasks=ds.max_pending_tasks)
        self.reports = Reports(core=self.core, nodes=self.nodes, pipeline=self.pipeline,
                               metrics=metrics, clock=self.clock,
                               agents=AgentUsers(self.settings.auth),
                               daemon_user=self.bus.settings.user)
        self.core.restore(fleet.tasks.values())
        self.core.transitional.seed(self.world.vms, now)
        # The store gave every live record whole: keep the answers of the recent ones only,
        # now rather than in the first housekeeping tick, while nothing waits for the loop.
        self.core.cool(now)
        fleet.idempotency.clear()
        self.nodes.restore(now)
        expired = self.core.expire_due(now)
        # What the previous process stored but maybe never published goes out first: after
        # the expiries above were decided (an order of a task they ended is left out), ahead
        # of every turn (the writer starts after this) and before consuming (below).
        replayed = self.pipeline.replay(outbox, due=lambda order: still_due(order, self.world, now))
        if outbox:
            log.info("publishing the outbox left by the previous process", stored=len(outbox),
                     to_send=replayed)
        self.tasks.start("store-writer", "publisher", "lister")
        # The fleet is built: keep the collector from rescanning it (docs/store.md).
        gc.freeze()
        try:
            connected = await unless_stopped(self.bus.start(), stop or asyncio.Event())
        except (ConnectFailed, BusFailed) as exc:
            await self.abort()
            raise StartupError(str(exc), ExitCode.FAILED) from None
        if not connected:
            await self.abort()
            raise StartupError("stopped while waiting for the broker", ExitCode.OK)
        for name in sorted(nodes):
            self.nodes.request_sync(name, "daemon start")
        await self.pipeline.flush()
        # Consumers last: the replayed outbox and the expiries are published (docs/bus.md §6:
        # reports, then commands, back to back).
        # Guarded (vmd.daemon.poison): no single message may stop the daemon.
        guard = Guard(pipeline=self.pipeline, store=self.store, clock=self.clock,
                      metrics=self.core.metrics)
        self._reports = await self.bus.consume(
            REPORTS_QUEUE, guard.wrap(self.reports.handle), prefetch=ds.prefetch)
        await self.bus.consume(COMMANDS_QUEUE, guard.wrap(self.intake.handle),
                               prefetch=ds.prefetch)
        self.tasks.start("bus", "deadlines", "node-monitor", "reconcile", "housekeeping",
                         "watchdog", "loop-lag")
        self.running = True
        status = f"{len(self.world.vms)} VMs, {len(self.nodes.online())} nodes online"
        if self.leadership is not None:
            status = self.leadership.active(status)
        self.tasks.notify.ready(status)
        log.info("ready", vms=len(self.world.vms), nodes=len(nodes),
                 nodes_online=len(self.nodes.online()), pending_tasks=len(fleet.tasks),
                 expired_at_start=expired, idempotency_keys=len(self.core.idempotency),
                 store=str(ds.store))

    async def _lead(self, stop: asyncio.Event | None) -> Fence | None:
        """PostgreSQL: a standby until the lease is ours, then the store's fence (ha.md)."""
        ds = self.daemon_settings
        if not isinstance(parse_target(ds.store), PostgresUrl):
            return None
        self.leadership = Leadership(str(ds.store), metrics=self.metrics,
                                     lease_seconds=ds.lease, notify=self.tasks.notify)
        # A standby has sent READY=1: systemd's watchdog runs for it too.
        self.tasks.start("standby-watchdog")
        if not await self.leadership.acquire(stop or asyncio.Event()):
            raise StartupError("stopped as a standby", ExitCode.OK)
        await self.tasks.stop("standby-watchdog")  # "watchdog" takes over once consuming
        self.tasks.start("lease")
        return self.leadership.fence

    def _serve_metrics(self) -> None:
        try:
            self.metrics_server = serve_metrics(self.metrics.registry, self.daemon_settings.metrics)
        except MetricsServeError as exc:
            raise StartupError(str(exc), ExitCode.FAILED) from None
        log.info("metrics served", url=self.metrics_server.url)

    def _declare_tasks(self) -> None:
        """The daemon's long-lived tasks, in the order `start` starts them. Each is made when
        it starts, from the parts `start` has built by then; `shutdown` stops them in the
        order of docs/shutdown.md."""
        declare, options = self.tasks.declare, self.options
        # On a PostgreSQL store, once the lease is ours: its renewal (vmd.daemon.leadership).
        declare("lease", self._hold_lease)
        declare("standby-watchdog", systemd.watchdog_loop)
        # Before the first connect: the pipeline's two stages and the big-list builder.
        declare("store-writer", lambda: self.pipeline.run_writer())
        declare("publisher", lambda: self.pipeline.run_publisher())
        declare("lister", lambda: self.intake.lister.run())
        # Once consuming. The bus's watcher returns when the shutdown closes it; it raises
        # BusFailed when the link stopped on its own.
        declare("bus", lambda: self.bus.wait_closed(), may_return=True)
        declare("deadlines", lambda: run_deadlines(
            deadlines=self.core.deadlines, expire=self.core.expire_due, clock=self.clock,
            tick=options.tick))
        declare("node-monitor", lambda: run_node_monitor(
            nodes=self.nodes, clock=self.clock, tick=options.tick,
            backlogged=self._reports_backlogged))
        declare("reconcile", lambda: run_reconcile(
            nodes=self.nodes, interval=self.daemon_settings.reconcile_interval))
        declare("housekeeping", lambda: run_housekeeping(
            core=self.core, pipeline=self.pipeline, store=self.store, bus=self.bus,
            metrics=self.metrics, clock=self.clock, tick=options.tick,
            purge_interval=options.purge_interval))
        declare("watchdog", systemd.watchdog_loop)
        declare("loop-lag", lambda: monitor_loop_lag(observe=self.metrics.loop_lag.observe))

    async def _hold_lease(self) -> None:
        assert self.leadership is not None  # started once the lease is ours
        await self.leadership.run()

    def _reports_backlogged(self) -> bool:
        # The reports consumer holds all it may: heartbeats may be waiting among them, so
        # the node monitor declares no node lost meanwhile.
        reports = self._reports
        return reports is not None and reports.in_hand >= reports.prefetch

    # -- stop -------------------------------------------------------------------------------

    async def shutdown(self, hurry: asyncio.Event | None = None) -> None:
        """docs/shutdown.md, steps 1-7, in order."""
        hurry = hurry or asyncio.Event()
        self.running = False
        # 1. Stop consuming and producing.
        self.core.draining = True
        notify = self.tasks.notify
        notify.status("draining")
        log.info("draining")
        await asyncio.sleep(0)  # deliveries being dispatched reach the intake's 503 path
        requeued = await self.bus.stop_consuming()
        await self.tasks.stop("deadlines", "node-monitor", "reconcile", "housekeeping")
        # 2. Finish what is in hand, up to the drain deadline.
        notify.status("draining: finishing requests in hand")
        flushed = await _within(self._finish(), self.daemon_settings.drain_timeout, hurry)
        if not flushed:
            log.warning("drain deadline reached; unfinished requests go back to their queue")
        # 3. Requeue what was answered 503 (or not started) and held.
        held, self.pipeline.held = self.pipeline.held, []
        for delivery in held:
            requeued += await delivery.reject(requeue=True)
        # 4. Flush and close the store.
        await self.tasks.stop("store-writer", "publisher")
        await self.pipeline.abandon()
        await self._close_store()
        # 5. The state is safe.
        notify.stopping("stopping: store closed")
        # 6. The broker connection, last.
        left = sum(c.in_hand for c in self.bus.consumers)
        await self.bus.close(drain_timeout=0.0 if hurry.is_set() else self.options.close_timeout)
        if self.leadership is not None:  # nothing more is written, published or acked
            await self.tasks.stop("lease")
            await self.leadership.release()
        # 7. The rest (lister, the bus's watcher, watchdog, loop-lag), and metrics.
        await self.tasks.stop()
        if self.metrics_server is not None:
            await asyncio.to_thread(self.metrics_server.close)
        log.info("shutdown complete", answered=self.pipeline.answered, requeued=requeued,
                 left_in_hand=left, unsent=self.pipeline.unsent)

    async def _finish(self) -> None:
        # The big lists in hand are answered first (vmd.daemon.listing), then flushed.
        await self.intake.lister.join()
        await self.pipeline.flush()

    async def abort(self) -> None:
        """After a crash or a failed start: stop everything without draining."""
        self.running = False
        await self.tasks.stop()
        await self.pipeline.abandon()
        with contextlib.suppress(Exception):
            await self.bus.close(drain_timeout=0.0)
        await self._close_store()
        if self.metrics_server is not None:
            await asyncio.to_thread(self.metrics_server.close)

    async def _close_store(self) -> None:
        # In the writer thread, after any write still running there.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self.store.close)
        await asyncio.to_thread(self.executor.shutdown, True)


async def _within(aw: Awaitable[None], timeout: float, hurry: asyncio.Event) -> bool:
    """Wait for `aw` up to `timeout` or until `hurry` is set; True when it finished."""
    task = asyncio.ensure_future(aw)
    cut = asyncio.ensure_future(hurry.wait())
    try:
        done, _ = await asyncio.wait({task, cut}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        cut.cancel()
    if task in done:
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False


async def serve(
    settings: Settings, options: Options | None = None, *, stop: asyncio.Event,
    hurry: asyncio.Event | None = None,
) -> int:
    """Run until `stop` is set, then drain; return the exit code."""
    daemon = Daemon(settings, options)
    try:
        await daemon.start(stop)
    except StartupError as exc:
        print(stderr_text(f"vmd daemon: {exc}", "error" if exc.code else "info"),
              file=sys.stderr)
        return exc.code
    crash = await daemon.tasks.until_stopped(stop)
    if crash is not None:  # logged by the supervisor
        await daemon.abort()
        return crash.code
    await daemon.shutdown(hurry)
    # A task that failed while being stopped was logged; the drain went on regardless.
    return ExitCode.OK if daemon.tasks.crash is None else daemon.tasks.crash.code

