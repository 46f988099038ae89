"""Agent reports from `vmd.agent.reports`: results, observations, syncs, heartbeats, ISO lists.

Like the intake, the handler decides each report synchronously on arrival and records the
decisions into the current turn; the delivery is acked once the turn is stored and
published. A result carries the observations of its VM the agent saw while the task ran
(its own change): they are applied before the outcome, in the same turn, as an observation
report followed by the result would be. A result from an agent of the version before carries
none (its observations come alone): both are accepted, so agents upgrade after the daemon.
What each report does (docs/bus.md §3, docs/fsm.md §3.6, §5):

| report | decision |
|---|---|
| `TaskResult` | `observe` what it carries, then `complete_task` (dropped: ended/unknown task) |
| `ResultBatch` | each result as a `TaskResult`, all in one turn |
| `ObservationReport` | `observe` each, cause `node` |
| `FullSync` | `full_sync` (cause `sync`; changes counted as drift corrected), and the ISOs |
| `Heartbeat` | the node is alive: `online` if it was unreachable (event, full sync asked) |
| `IsoList` | the node's ISO images (what `cdimage` may name) |
| `TaskUndelivered` | `expired`: its TTL was its deadline, so it ends now as at its deadline |

A `TaskUndelivered` with another reason (`rejected`, `maxlen`) is logged; its deadline ends it.

Trust (docs/security.md): the broker validates every `user_id`, and this handler checks it is
the sender it expects before anything is decided. A report is applied only when its sender
is configured in `[auth.agents]` for the report's node; a result only when it comes from the
node its task was sent to and names the task's VM (in a `ResultBatch` such a result is
refused alone, the others applied); a dead-lettered task only when its
`user_id` is the daemon's own (the broker keeps the original publisher's on the
dead-lettered copy, while the `x-death` headers anyone may set). Anything else is dropped:
acked (a repeat would be refused again), counted in `vmd_agent_messages_refused_total`, and
logged once per sender and minute (`vmd.obs.refusals`). A message from a user that is neither
an agent nor the daemon is refused before it is even decoded. A value the daemon
could not keep (`RefusedValue`: a NUL, an over-long string, a VM uuid not of vmadm's shape,
docs/bus.md §3 "Field limits") is refused the same way (`bad_value`), per item where the
items are independent: the step decides in memory before the store writes, so a VM whose
row the store refuses would stay in the world unstored and fail every later full sync of
its node. The decoder leaves out such an observation (of an observation report, a full
sync, or carried by a result) and such a result of a `ResultBatch` (`LeftOut`); the rest is
applied, and each item left out is counted once and logged (once per sender and minute)
with its field and limit. A VM left out of a full sync whose uuid is valid keeps its last
record (`FullSync.kept`: it is on the node, only not readable now), so one bad VM does not
stop its node's other VMs syncing; one whose uuid is not valid is only dropped (the daemon
could never have stored it). A report whose own fields hold such a value (its node, a
lone result's task id or definition, an ISO name) is refused whole.

Liveness comes from what the node's agent says (vmd.daemon.nodes): any report proves its
node online (a node vmd has not heard of is added and online at once), and heartbeats say
how long silence may last (3 x their `interval`). A report that does not decode is
dead-lettered to `vmd.dead` (a bug to look at, not to retry).
"""

from __future__ import annotations

from vmd.bus import (
    AgentReport,
    Delivery,
    FullSync,
    Heartbeat,
    IsoList,
    LeftOut,
    ObservationReport,
    ProtocolError,
    PublishFailed,
    RefusedValue,
    ResultBatch,
    TaskResult,
    TaskUndelivered,
    decode_report,
)
from vmd.daemon.auth import AgentUsers
from vmd.daemon.commit import Effects, Pipeline, Settle
from vmd.daemon.core import Core
from vmd.daemon.nodes import Nodes
from vmd.daemon.options import Clock
from vmd.fsm import Decision, complete_task, expire_task, full_sync, observe
from vmd.obs.logging import get_logger, log_context
from vmd.obs.metrics import DaemonMetrics
from vmd.obs.refusals import Refusals

log = get_logger(__name__)


class Reports:
    """The `vmd.agent.reports` handler."""

    def __init__(self, *, core: Core, nodes: Nodes, pipeline: Pipeline,
                 metrics: DaemonMetrics, clock: Clock, agents: AgentUsers,
                 daemon_user: str) -> None:
        self.core = core
        self.nodes = nodes
        self.world = core.world
        self.pipeline = pipeline
        self.metrics = metrics
        self.clock = clock
        self.agents = agents
        self.daemon_user = daemon_user
        self.refusals = Refusals(metrics.refused)

    async def handle(self, delivery: Delivery) -> None:
        if delivery.stale:
            return
        if self.core.draining:
            self._settle(delivery, Settle.HOLD)  # requeued, for the next instance
            return
        sender = delivery.user_id
        if sender != self.daemon_user and not self.agents.known(sender):
            self._refuse(delivery, "unknown_sender", "agent report from an unknown sender "
                         "refused")
            return
        try:
            report = decode_report(delivery)
        except RefusedValue as exc:
            # Not applied at all: the daemon must not hold what it could not store.
            self._refuse(delivery, "bad_value", "agent report with a value the daemon cannot "
                         "keep refused", error=str(exc))
            return
        except ProtocolError as exc:
            await self._dead_letter(delivery, f"bad agent report: {exc}")
            return
        refused = self.refusal(report, sender)
        if refused is not None:
            self._refuse(delivery, *refused, node=_node_of(report))
            return
        if isinstance(report, ResultBatch):
            report = self._admitted(report, sender)
        for item in _left_out(report):
            self.refusals.refuse(sender, "bad_value", "agent report item with a value the "
                                 "daemon cannot keep left out", kind=delivery.type,
                                 node=_node_of(report), vm=item.uuid, error=item.reason)
        fx = Effects()
        try:
            self.apply(report, self.clock(), fx)
            fx.settle(delivery)
        finally:
            # Also when the step raised (`UNENCODABLE`, vmd.daemon.poison): what it booked
            # before goes with the turn, as the dead-lettering the guard then books for it.
            self.pipeline.submit(fx)

    def refusal(self, report: AgentReport, sender: str | None) -> tuple[str, str] | None:
        """Why `sender` may not send `report` (reason, log message), or None: it may."""
        if isinstance(report, TaskUndelivered):
            if sender != self.daemon_user:
                return "not_daemon", "dead-lettered task not published by the daemon refused"
            return None
        if not self.agents.may_report(sender, report.node):
            if not self.agents.known(sender):
                return "unknown_sender", "agent report from an unknown sender refused"
            return "wrong_node", "agent report for a node its sender does not serve refused"
        if isinstance(report, TaskResult):
            return self._foreign_task(report)
        return None

    def _admitted(self, batch: ResultBatch, sender: str | None) -> ResultBatch:
        """The batch without the results `refusal` refuses (each counted and logged)."""
        kept = []
        for result in batch.results:
            refused = self._foreign_task(result)
            if refused is None:
                kept.append(result)
            else:
                self.refusals.refuse(sender, *refused, kind="results", node=batch.node,
                                     task_id=result.task_id)
        return batch if len(kept) == len(batch.results) else ResultBatch(
            batch.node, batch.time, tuple(kept))

    def _foreign_task(self, result: TaskResult) -> tuple[str, str] | None:
        task = self.world.tasks.get(result.task_id)
        if task is not None and (task.node != result.node or task.vm_uuid != result.uuid):
            return "wrong_task", "task result for another node's or VM's task refused"
        return None

    def _refuse(self, delivery: Delivery, reason: str, what: str, **context: object) -> None:
        self.refusals.refuse(delivery.user_id, reason, what, kind=delivery.type, **context)
        self._settle(delivery)  # acked with the turn: a repeat is refused again

    def _settle(self, delivery: Delivery, how: Settle = Settle.ACK) -> None:
        """A report decided without any other effect (held, or refused): its settlement is
        that step's whole `Effects`, through the one door into a turn."""
        fx = Effects()
        fx.settle(delivery, how)
        self.pipeline.submit(fx)

    def apply(self, report: AgentReport, now: float, fx: Effects) -> None:
        """Decide one report (synchronous: the decision step), its effects into `fx`."""
        if isinstance(report, TaskUndelivered):
            self._undelivered(report, now, fx)
            return
        self.nodes.ensure(report.node, fx)
        if isinstance(report, Heartbeat):
            self.nodes.heartbeat(report.node, now, report.interval, fx)
            return
        self.nodes.alive(report.node, now, fx, synced=isinstance(report, FullSync))
        if isinstance(report, ObservationReport):
            for obs in report.observations:
                self._observed(observe(self.world, obs, now), now, fx)
        elif isinstance(report, TaskResult):
            self._result(report, now, fx)
        elif isinstance(report, ResultBatch):
            for result in report.results:
                self._result(result, now, fx)
        elif isinstance(report, FullSync):
            self.nodes.set_isos(report.node, report.isos, fx)
            drift = 0
            for d in full_sync(self.world, report.node, report.vms, report.time, now,
                               report.kept):
                if d.changes and d.new_vm is None:
                    drift += len(d.changes)
                self._observed(d, now, fx)
            if drift:
                self.metrics.drift_corrected.inc(drift)
                with log_context(node=report.node):
                    log.info("full sync corrected VM statuses", changes=drift)
        else:
            assert isinstance(report, IsoList)
            self.nodes.set_isos(report.node, report.isos, fx)

    def _result(self, result: TaskResult, now: float, fx: Effects) -> None:
        """The observations the result carries (its task's own change), then its outcome:
        in the order the agent saw them, as an observation report before it would be."""
        for obs in result.observations:
            self._observed(observe(self.world, obs, now), now, fx)
        d = complete_task(self.world, result.task_id, result.outcome, now)
        if d.dropped:
            with log_context(task_id=result.task_id, vm=result.uuid, node=result.node):
                log.info("late or duplicate task result dropped")
            return
        self.core.effects(d, now, fx)

    def _observed(self, d: Decision, now: float, fx: Effects) -> None:
        lag = self.metrics.reconcile_lag
        for c in d.changes:
            lag.observe(max(0.0, now - c.time))
        self.core.effects(d, now, fx)

    def _undelivered(self, report: TaskUndelivered, now: float, fx: Effects) -> None:
        task = report.task
        with log_context(task_id=task.task_id, vm=task.uuid, node=task.node):
            if report.reason == "expired":
                d = expire_task(self.world, task.task_id, now)
                if not d.dropped:
                    log.warning("task expired before its node's agent took it")
                    self.core.effects(d, now, fx)
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


def _left_out(report: AgentReport) -> tuple[LeftOut, ...]:
    """The items the decoder left out of `report`, of a batch's results too."""
    if isinstance(report, ResultBatch):
        return report.left_out + tuple(x for r in report.results for x in r.left_out)
    if isinstance(report, TaskResult | ObservationReport | FullSync):
        return report.left_out
    return ()


def _node_of(report: AgentReport) -> str:
    return report.task.node if isinstance(report, TaskUndelivered) else report.node
