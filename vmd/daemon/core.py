"""The daemon's decision step: what a `vmd.fsm` Decision makes the daemon do, as `Effects`.

Every input (a request, an agent report, a due deadline) is decided by a pure `vmd.fsm`
function on the event loop, which updates the in-memory `World` at once. The caller then
turns the `Decision` into effects with `Core.effects` (rows to store, events to publish,
tasks to send, final replies of stream mode; deadlines armed and metrics counted on the
way) and submits them to the commit pipeline (`Pipeline.submit`, vmd.daemon.commit)
*before its next await*. Because deciding and submitting happen in one synchronous step,
no other input can see a VM half-changed, and inputs about one VM are applied in the order
they arrived: the "one owner per VM" of docs/architecture.md rule 2 without a lock or a
per-VM queue.

`Core` also holds what the decision step reads besides the `World`, each part in its own
module: the idempotency records of answered requests (vmd.daemon.idempotency), the task
deadlines (vmd.daemon.deadlines), stream mode's subscribers (vmd.daemon.streams), the VMs
in transition (vmd.daemon.transitions) and the ended tasks kept in memory
(vmd.daemon.ended). Nodes are vmd.daemon.nodes. `pending_tasks` counts the tasks each
principal created that are still pending (vmd.daemon.intake answers 429 past `[daemon]
max_pending_tasks`).
"""

from __future__ import annotations

from collections.abc import Iterable

from vmd.bus import Event
from vmd.daemon.commit import Answer, Effects, Pipeline, agent_task
from vmd.daemon.deadlines import Deadlines
from vmd.daemon.ended import EndedTasks
from vmd.daemon.idempotency import DEFAULT_MAX_RECORDS, Records
from vmd.daemon.options import Options
from vmd.daemon.streams import Streams
from vmd.daemon.transitions import Transitional
from vmd.fsm import (
    Decision,
    Ignored,
    World,
    expire_task,
    start_resync,
    status_event,
    status_routing_key,
    task_event,
    task_reply,
    task_routing_key,
)
from vmd.model import Task, VmStatus
from vmd.obs.logging import get_logger
from vmd.obs.metrics import DaemonMetrics
from vmd.store import IdempotencyKey, IdempotencyRecord

log = get_logger(__name__)

_NOTCREATED = VmStatus.NOTCREATED.value

class Core:
    """The in-memory state around the `World`, and `effects()`, what every decision makes."""

    def __init__(
        self,
        *,
        world: World,
        idempotency: dict[IdempotencyKey, IdempotencyRecord],
        options: Options,
        metrics: DaemonMetrics,
        pipeline: Pipeline,
        max_records: int = DEFAULT_MAX_RECORDS,
    ) -> None:
        self.world = world
        self.metrics = metrics
        self.pipeline = pipeline
        evicted = Effects()
        self.records = Records(idempotency, evicted, hot_seconds=options.idempotency_hot_seconds,
                               max_records=max_records, evicted=metrics.idempotency_evicted.inc)
        if evicted:
            pipeline.submit(evicted)
        # The same maps, by the names the intake and the tests read.
        self.idempotency = self.records.hot
        self.cold = self.records.cold
        # Pending tasks per principal (the user whose request created them).
        self.pending_tasks: dict[str, int] = {}
        self.deadlines = Deadlines()
        self.ended = EndedTasks(world.tasks, keep=options.keep_ended,
                                keep_seconds=options.keep_ended_seconds)
        self._vm_counts = metrics.vm_status
        # Set by the runner when shutting down: intake answers 503 and holds deliveries.
        self.draining = False
        # VMs in starting/stopping, for the transition metrics (vmd.daemon.transitions).
        self.transitional = Transitional(metrics, world.tasks)
        # Stream mode's subscribers of the pending tasks (vmd.daemon.streams).
        self.streams = Streams()

    # -- start-up ----------------------------------------------------------------------------

    def restore(self, pending: Iterable[Task]) -> None:
        """After loading the store: arm every pending task's deadline, count it, take its
        stream subscribers."""
        pending = list(pending)
        self.streams.restore(pending)
        for task in pending:
            self.deadlines.push(task)
            self._count_task(task.principal, 1)

    # -- the decision step's bookkeeping ----------------------------------------------------

    def effects(self, d: Decision, now: float, fx: Effects) -> Effects:
        """Add everything `d` implies to `fx` (rows, events, orders, the final replies of
        stream mode), arm its deadlines and count it; returns `fx`."""
        if d.new_vm is not None:
            self._vm_counts.add(_NOTCREATED)
        if d.vm is not None:
            fx.put_vm(d.vm)
        if d.changes:
            status_changed = self.metrics.status_changed
            move = self._vm_counts.move
            for c in d.changes:
                fx.event(Event(status_routing_key(c), status_event(c)))
                fx.put_history(c, now)  # the power history, same transaction
                self.transitional.changed(c, now)
                move(c.previous.value, c.status.value)
                status_changed(c.cause.value)
        for task in d.ended:
            self._task_ended(task, fx, now)
        if d.new_task is not None:
            self._task_created(d.new_task, fx)
        for uuid in d.resync:
            # Waits (Ignored.NODE_DOWN) while the node is not online: its return to online
            # requests a full sync of the node, which re-syncs this VM too.
            self.effects(start_resync(self.world, uuid, now), now, fx)
        if d.ignored is Ignored.FROZEN:
            self.metrics.frozen_ignored.inc()
            vm = d.vm
            log.warning("frozen VM changed on its node; ignored",
                        vm=vm.uuid if vm else None, hostname=vm.hostname if vm else None)
        return fx

    def _task_created(self, task: Task, fx: Effects) -> None:
        fx.put_task(self.streams.row(task))  # with its first stream subscriber, if any
        params = dict(task.params)  # a copy: the order is encoded again when published
        vm = self.world.vms.get(task.vm_uuid)
        hostname = vm.hostname if vm is not None else str(params.get("hostname", task.vm_uuid))
        fx.order(agent_task(task, hostname, params))
        self.deadlines.push(task)
        self.metrics.tasks_in_flight.inc()
        self._count_task(task.principal, 1)

    def _task_ended(self, task: Task, fx: Effects, now: float) -> None:
        fx.put_task(task)
        vm = self.world.vms.get(task.vm_uuid)
        hostname = vm.hostname if vm is not None else str(task.params.get("hostname", ""))
        fx.event(Event(task_routing_key(task), task_event(task, hostname)))
        ended = task.ended if task.ended is not None else now
        self.metrics.task_ended(task.action.value, task.state.value, ended - task.created)
        self.metrics.tasks_in_flight.dec()
        self._count_task(task.principal, -1)
        subscribers = self.streams.ended(task.task_id)
        if subscribers:
            final = task_reply(task)
            for sub in subscribers:
                fx.answer(Answer(sub.reply_to, sub.correlation_id, final))
                self.records.add_final(sub.user, sub.message_id, final, fx)
        self.ended.ended(task.task_id, ended)
        # Debug, not info: one line per task is per-message logging on the hot path
        # (docs/performance.md); outcomes are counted in metrics and published as events.
        log.debug("task ended", task_id=task.task_id, vm=task.vm_uuid, hostname=hostname,
                  node=task.node, action=task.action.value, status=task.state.value)

    def _count_task(self, user: str | None, n: int) -> None:
        if user is None:
            return  # vmd's own re-syncs count for nobody
        count = self.pending_tasks.get(user, 0) + n
        if count > 0:
            self.pending_tasks[user] = count
        else:
            self.pending_tasks.pop(user, None)

    # -- idempotency records (vmd.daemon.idempotency) --------------------------------------

    def remember(self, record: IdempotencyRecord, fx: Effects) -> None:
        self.records.remember(record, fx)

    def forget_key(self, key: IdempotencyKey) -> None:
        self.records.forget_key(key)

    def records_of(self, user: str) -> int:
        return self.records.records_of(user)

    def cool(self, now: float) -> int:
        return self.records.cool(now, self.world.tasks)

    def purge_idempotency(self, now: float) -> int:
        return self.records.purge(now)

    # -- deadlines ----------------------------------------------------------------------------

    def expire_due(self, now: float) -> int:
        """End every task whose deadline passed (REVOKED); returns how many ended now."""
        n = 0
        fx = Effects()
        for task_id in self.deadlines.due(now):
            d = expire_task(self.world, task_id, now)
            if not d.dropped:
                n += 1
                self.effects(d, now, fx)
        if fx:
            self.pipeline.submit(fx)
        return n

    # -- housekeeping ------------------------------------------------------------------------

    def forget_ended(self, now: float) -> int:
        """Drop ended tasks older than `keep_ended_seconds` from memory (the store has them)."""
        return self.ended.forget_old(now)
