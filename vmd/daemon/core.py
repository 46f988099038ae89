"""The daemon's decision step: what a `vmd.fsm` Decision makes the daemon do, as `Effects`.

Every input (a request, an agent report, a due deadline) is decided by a pure `vmd.fsm`
function on the event loop, which updates the in-memory `World` at once. The caller then
turns the `Decision` into effects with `Core.effects` (rows to store, events to publish,
tasks to send, final replies of stream mode; deadlines armed and metrics counted on the
way) and submits them to the commit pipeline (`Pipeline.submit`, vmd.daemon.commit)
*before its next await* (`Core.record` does both). Because deciding and submitting happen
in one synchronous step, no other input can see a VM half-changed, and inputs about one VM
are applied in the order they arrived: the "one owner per VM" of docs/architecture.md rule
2 without a lock or a per-VM queue.

`Core` also holds what the decision step reads besides the `World`: the idempotency records
of answered requests, the task deadlines, the ended tasks kept in memory, and stream mode's
subscribers (vmd.daemon.streams). Nodes are vmd.daemon.nodes.

Idempotency records live 24 h (protocol.md §5), so at a steady rate of requests with a
`message_id` their number is that rate times a day. Their answers are what costs memory
(~0.7-1.4 KB a record, docs/operations.md), and a repeat nearly always comes within seconds
(a client's retry after a lost connection). So a record keeps its answers in memory for
`Options.idempotency_hot_seconds` (`idempotency`, "hot"); after that only its key and
creation time stay (`cold`, ~270 B), and the intake reads the answers of a repeat that late
from the store. A record whose task is still pending stays hot: its stream-mode final reply
is added to it when the task ends.

Bounded per principal (protocol.md §5): each principal keeps at most `max_records`
records (`[daemon] max_idempotency_records`); a new one past it evicts that principal's
oldest, from memory and from the store in the same batch. Each principal's keys are kept
oldest first in an `OrderedDict`, so an eviction is O(1) on the hot path (a plain dict whose
front keys are deleted one by one fills with deleted slots that every look at its first key
must skip, until the next resize). `pending_tasks` counts the tasks each principal created
that are still pending (vmd.daemon.intake answers 429 past `[daemon] max_pending_tasks`).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable

from vmd.bus import Event
from vmd.daemon.commit import Answer, Effects, Pipeline, agent_task
from vmd.daemon.deadlines import Deadlines
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
from vmd.model import Reply, Task, TaskId, VmStatus
from vmd.obs.logging import get_logger
from vmd.obs.metrics import DaemonMetrics
from vmd.store import RETENTION, IdempotencyKey, IdempotencyRecord

log = get_logger(__name__)

# `[daemon] max_idempotency_records` (vmd.config.DaemonSettings) when none is given.
DEFAULT_MAX_RECORDS = 10_000
_NOTCREATED = VmStatus.NOTCREATED.value

class Core:
    """The in-memory state around the `World`, and `record()`, the step every input ends in."""

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
        # Hot records, in order of creation (so `cool` and the purge look at the front only).
        self.idempotency = dict(sorted(idempotency.items(), key=lambda kv: kv[1].created))
        # Cold records: key -> creation time; the answers are in the store.
        self.cold: dict[IdempotencyKey, float] = {}
        self._hot_seconds = options.idempotency_hot_seconds
        self.metrics = metrics
        self.pipeline = pipeline
        # Each principal's record keys (hot and cold), oldest first (module docstring).
        self._max_records = max_records
        self._keys_of: dict[str, OrderedDict[str, None]] = {}
        evicted = Effects()
        for key in list(self.idempotency):
            self._admit(key, evicted)  # a lowered cap applies to the restored records too
        if evicted:
            pipeline.submit(evicted)
        # Pending tasks per principal (the user whose request created them).
        self.pending_tasks: dict[str, int] = {}
        self.deadlines = Deadlines()
        self._keep_ended = options.keep_ended
        self._keep_ended_seconds = options.keep_ended_seconds
        self._ended: deque[tuple[float, TaskId]] = deque()
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

    def record(self, d: Decision, now: float) -> None:
        """Submit everything `d` implies to the pipeline (call before any await)."""
        self.pipeline.submit(self.effects(d, now, Effects()))

    def effects(self, d: Decision, now: float, fx: Effects) -> Effects:
        """Add everything `d` implies to `fx` (rows, events, orders, the final replies of
        stream mode), arm its deadlines and count it; returns `fx`."""
        if d.new_vm is not None:
            self._vm_counts.add(_NOTCREATED)
        if d.vm is not None:
            fx.vms.append(d.vm)
        if d.changes:
            events = fx.events
            history = fx.history
            status_changed = self.metrics.status_changed
            move = self._vm_counts.move
            for c in d.changes:
                events.append(Event(status_routing_key(c), status_event(c)))
                history.append((c, now))  # the power history, same transaction
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
        fx.tasks.append(self.streams.row(task))  # with its first stream subscriber, if any
        params = dict(task.params)  # a copy: the order is encoded again when published
        vm = self.world.vms.get(task.vm_uuid)
        hostname = vm.hostname if vm is not None else str(params.get("hostname", task.vm_uuid))
        fx.orders.append(agent_task(task, hostname, params))
        self.deadlines.push(task)
        self.metrics.tasks_in_flight.inc()
        self._count_task(task.principal, 1)

    def _task_ended(self, task: Task, fx: Effects, now: float) -> None:
        fx.tasks.append(task)
        vm = self.world.vms.get(task.vm_uuid)
        hostname = vm.hostname if vm is not None else str(task.params.get("hostname", ""))
        fx.events.append(Event(task_routing_key(task), task_event(task, hostname)))
        ended = task.ended if task.ended is not None else now
        self.metrics.task_ended(task.action.value, task.state.value, ended - task.created)
        self.metrics.tasks_in_flight.dec()
        self._count_task(task.principal, -1)
        subscribers = self.streams.ended(task.task_id)
        if subscribers:
            final = task_reply(task)
            for sub in subscribers:
                fx.answers.append(Answer(sub.reply_to, sub.correlation_id, final))
                self._add_final(sub.user, sub.message_id, final, fx)
        self._ended.append((ended, task.task_id))
        if len(self._ended) > self._keep_ended:
            self.world.tasks.forget((self._ended.popleft()[1],))
        # Debug, not info: one line per task is per-message logging on the hot path
        # (docs/performance.md); outcomes are counted in metrics and published as events.
        log.debug("task ended", task_id=task.task_id, vm=task.vm_uuid, hostname=hostname,
                  node=task.node, action=task.action.value, status=task.state.value)

    def _add_final(self, user: str | None, message_id: str | None, final: Reply,
                   fx: Effects) -> None:
        """Stream mode: the idempotency record keeps the final reply too (for a retry)."""
        if not user or not message_id:
            return
        record = self.idempotency.get((user, message_id))
        if record is None or len(record.replies) > 1:
            return
        record = IdempotencyRecord(user, message_id, (record.replies[0], final), record.created)
        self.idempotency[user, message_id] = record
        fx.records.append(record)

    def _count_task(self, user: str | None, n: int) -> None:
        if user is None:
            return  # vmd's own re-syncs count for nobody
        count = self.pending_tasks.get(user, 0) + n
        if count > 0:
            self.pending_tasks[user] = count
        else:
            self.pending_tasks.pop(user, None)

    def remember(self, record: IdempotencyRecord, fx: Effects) -> None:
        """A request answered for the first time (or a record read back from the store and
        completed): keep its answers for 24 h (same batch), in memory while hot. A new
        record past the principal's cap evicts its oldest (module docstring)."""
        key = (record.user, record.message_id)
        known = key in self.idempotency or self.cold.pop(key, None) is not None
        self.idempotency[key] = record
        fx.records.append(record)
        if not known:
            self._admit(key, fx)

    def _admit(self, key: IdempotencyKey, fx: Effects) -> None:
        user, message_id = key
        keys = self._keys_of.get(user)
        if keys is None:
            keys = self._keys_of[user] = OrderedDict()
        keys[message_id] = None
        if len(keys) > self._max_records:
            oldest, _ = keys.popitem(last=False)
            old = (user, oldest)
            if self.idempotency.pop(old, None) is None:
                self.cold.pop(old, None)
            fx.evicted.append(old)
            self.metrics.idempotency_evicted.inc()

    def _unlink(self, key: IdempotencyKey) -> None:
        keys = self._keys_of.get(key[0])
        if keys is not None:
            keys.pop(key[1], None)
            if not keys:
                del self._keys_of[key[0]]

    def forget_key(self, key: IdempotencyKey) -> None:
        """A cold key the store no longer has (past 24 h): the request is new again."""
        self.cold.pop(key, None)
        self._unlink(key)

    def records_of(self, user: str) -> int:
        """How many idempotency records `user` has (hot and cold)."""
        keys = self._keys_of.get(user)
        return 0 if keys is None else len(keys)

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
        cutoff = now - self._keep_ended_seconds
        ids = []
        ended = self._ended
        while ended and ended[0][0] < cutoff:
            ids.append(ended.popleft()[1])
        self.world.tasks.forget(ids)
        return len(ids)

    def cool(self, now: float) -> int:
        """Drop the answers of records older than the hot period from memory, keeping their
        keys (see the module docstring); those of a pending task stay. Returns how many."""
        cutoff = now - self._hot_seconds
        tasks = self.world.tasks
        cooled = []
        for key, record in self.idempotency.items():
            if record.created >= cutoff:
                break  # in order of creation: the rest are younger
            first = record.replies[0]
            if first.code == 201:
                task = tasks.get(str(first.body.get("task_id")))
                if task is not None and not task.done:
                    continue  # its final reply is still to come
            cooled.append((key, record.created))
        for key, created in cooled:
            del self.idempotency[key]
            self.cold[key] = created
        return len(cooled)

    def purge_idempotency(self, now: float) -> int:
        """Drop idempotency records first seen more than 24 h ago (the store purges its own).
        Both maps are in about the order of creation, so only their fronts are looked at: a
        record that cooled late (its task was pending) may stay a little longer in memory,
        and a repeat of it past 24 h finds it gone from the store (new request, as §2 says).
        A full scan of a day of keys would stall the loop for seconds at 100 requests/s."""
        cutoff = now - RETENTION
        old = []
        for key, record in self.idempotency.items():
            if record.created >= cutoff:
                break
            old.append(key)
        for key in old:
            del self.idempotency[key]
            self._unlink(key)
        old_cold = []
        for key, created in self.cold.items():
            if created >= cutoff:
                break
            old_cold.append(key)
        for key in old_cold:
            del self.cold[key]
            self._unlink(key)
        return len(old) + len(old_cold)
