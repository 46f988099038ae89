"""Agent reports from `vmd.agent.reports`: results, observations, syncs, heartbeats, ISO lists.

Like the intake, the handler decides each report synchronously on arrival and records the
decisions into the current turn; the delivery is acked once the turn is stored and
published. What each report does (docs/bus.md §3, vm-status.md §3.6, §5):

| report | decision |
|---|---|
| `TaskResult` | `complete_task` (a result for an ended or unknown task is dropped) |
| `ObservationReport` | `observe` each, cause `node` |
| `FullSync` | `full_sync` (cause `sync`; changes counted as drift corrected), and the ISOs |
| `Heartbeat` | the node is alive: `online` if it was unreachable (event, full sync asked) |
| `IsoList` | the node's ISO images (what `cdimage` may name) |
| `TaskUndelivered` | `expired`: its TTL was its deadline, so it ends now as at its deadline |

A `TaskUndelivered` with another reason (`rejected`, `maxlen`) is logged; its deadline ends it.

Liveness comes from what the node's agent says (vmd.daemon.nodes): any report proves its
node online (a node vmd has not heard of is added and online at once), and heartbeats say
how long silence may last (3 x their `interval`). A report that does not decode is
dead-lettered to `vmd.dead` (a bug to look at, not to retry).
"""

from __future__ import annotations

from vmd.bus import (
    Delivery,
    FullSync,
    Heartbeat,
    IsoList,
    ObservationReport,
    ProtocolError,
    PublishFailed,
    TaskResult,
    TaskUndelivered,
    decode_report,
)
from vmd.bus.agent_messages import AgentReport
from vmd.daemon.commit import Pipeline, Settle
from vmd.daemon.core import Core
from vmd.daemon.nodes import Nodes
from vmd.daemon.options import Clock
from vmd.fsm import Decision, complete_task, expire_task, full_sync, observe
from vmd.obs.logging import get_logger, log_context
from vmd.obs.metrics import DaemonMetrics

log = get_logger(__name__)


class Reports:
    """The `vmd.agent.reports` handler."""

    def __init__(self, *, core: Core, nodes: Nodes, pipeline: Pipeline,
                 metrics: DaemonMetrics, clock: Clock) -> None:
        self.core = core
        self.nodes = nodes
        self.world = core.world
        self.pipeline = pipeline
        self.metrics = metrics
        self.clock = clock

    async def handle(self, delivery: Delivery) -> None:
        if delivery.stale:
            return
        if self.core.draining:
            self.pipeline.settle(delivery, Settle.HOLD)  # requeued, for the next instance
            return
        try:
            report = decode_report(delivery)
        except ProtocolError as exc:
            await self._dead_letter(delivery, f"bad agent report: {exc}")
            return
        self.apply(report, self.clock())
        self.pipeline.settle(delivery)

    def apply(self, report: AgentReport, now: float) -> None:
        """Decide one report (synchronous: the decision step)."""
        core = self.core
        if isinstance(report, TaskUndelivered):
            self._undelivered(report, now)
            return
        self.nodes.ensure(report.node)
        if isinstance(report, Heartbeat):
            self.nodes.heartbeat(report.node, now, report.interval)
            return
        self.nodes.alive(report.node, now, synced=isinstance(report, FullSync))
        if isinstance(report, ObservationReport):
            for obs in report.observations:
                self._observed(observe(self.world, obs, now), now)
        elif isinstance(report, TaskResult):
            d = complete_task(self.world, report.task_id, report.outcome, now)
            if d.dropped:
                with log_context(task_id=report.task_id, vm=report.uuid, node=report.node):
                    log.info("late or duplicate task result dropped")
                return
            core.record(d, now)
        elif isinstance(report, FullSync):
            self.nodes.set_isos(report.node, report.isos)
            drift = 0
            for d in full_sync(self.world, report.node, report.vms, report.time, now):
                if d.changes and d.new_vm is None:
                    drift += len(d.changes)
                self._observed(d, now)
            if drift:
                self.metrics.drift_corrected.inc(drift)
                with log_context(node=report.node):
                    log.info("full sync corrected VM statuses", changes=drift)
        else:
            assert isinstance(report, IsoList)
            self.nodes.set_isos(report.node, report.isos)

    def _observed(self, d: Decision, now: float) -> None:
        lag = self.metrics.reconcile_lag
        for c in d.changes:
            lag.observe(max(0.0, now - c.time))
        self.core.record(d, now)

    def _undelivered(self, report: TaskUndelivered, now: float) -> None:
        task = report.task
        with log_context(task_id=task.task_id, vm=task.uuid, node=task.node):
            if report.reason == "expired":
                d = expire_task(self.world, task.task_id, now)
                if not d.dropped:
                    log.warning("task expired before its node's agent took it")
                    self.core.record(d, now)
            else:
                log.warning("task not delivered; its deadline will end it", reason=report.reason)

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        log.error("agent report dead-lettered", reason=reason)
        try:
            await delivery.dead_letter(reason[:200])
        except PublishFailed as exc:
            log.warning("dead-lettering failed; requeued", error=str(exc))
            if not delivery.settled:
                await delivery.reject(requeue=True)
