"""Taking tasks from the node's queue and running each exactly once, with its result reported.

`TaskRunner.handle` is the consumer's handler for `vmd.agent.tasks.<node>`; it returns at
once (the bus calls it once per delivery, in order). For each delivery:

0. Not published by the daemon (`user_id` other than `[agent] daemon_user`; the broker
   validates it, so it cannot be forged): dropped (acked), counted in
   `vmd_agent_messages_refused_total{reason="not_daemon"}` and logged once per sender and
   minute, never decoded nor run (docs/security.md).
1. Malformed, or for another node: rejected without requeue, logged with the reason. The
   task queue dead-letters it to the reports queue, where the daemon puts a malformed one
   into `vmd.dead` (an agent may not publish there) and sees a well-formed one as
   `TaskUndelivered(reason="rejected")`. `sync_request`: a full sync is requested, acked.
2. A task running here already (the broker delivered it again after a connection loss, or
   the daemon repeated it): acked, nothing else; the running one reports. Waiting here: the
   new delivery replaces the old one (which went stale with its connection).
3. A power task found in the journal (docs/agent.md): acked, never run again. If its outcome
   was recorded it is reported again; otherwise the agent died while it ran and its outcome
   is unknown: a FAILURE (returncode 255, `outcome unknown`, the VM's node state in the
   message) is reported, so the daemon reverts and re-syncs (docs/fsm.md §3.6). Such
   orphans are also reported once at start (`report_orphans`), without waiting for a
   redelivery that will not come when their ack had reached the broker.
4. Past its deadline: rejected without requeue. The task queue dead-letters it to the
   reports queue, where the daemon sees `TaskUndelivered(reason="rejected")` and revokes it
   (as for a task that expired in the queue); the daemon's own deadline timer covers it too.
5. Otherwise handed to the `Scheduler`.

A launched job (`_run`): deadline checked again; for power tasks the start is journaled
(fsync'd); the delivery is acked (so a long vmadm never meets RabbitMQ's 30-minute
`consumer_timeout`; if the ack cannot be sent the connection was lost, the journal entry is
withdrawn and vmadm does not run: the broker delivers the task again); vmadm runs with the
deadline; the outcome is journaled and reported (`TaskResult`), and the next job may start.
The reporter holds the watch's observations of a running task's VM until its result, which
carries them (`Reporter.hold`/`take`): the task's own change needs no report of its own.
A `current` task (a read, not journaled) is acked after its result is reported instead: an
agent killed while it runs leaves it unacked, so the broker gives it to the next agent.
A job whose vmadm is killed (preempted by a forced stop, or at the end of a shutdown drain)
reports a FAILURE with returncode 137 saying why.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from vmd.bus import (
    AgentTask,
    Delivery,
    ProtocolError,
    SyncRequest,
    TaskResult,
    decode_order,
)
from vmd.model import Action, NodeName, TaskOutcome, VmUuid
from vmd.obs.logging import get_logger, log_context
from vmd.obs.refusals import Refusals

from .driver.backend import Backend
from .driver.errors import HostKeyRejected, SshConfigError
from .execute import BrandOf, Execution
from .journal import Entry, Journal, JournalError
from .outcomes import command_of, killed, not_run, past_deadline, unknown
from .reporter import Reporter
from .scheduler import Job, Scheduler

log = get_logger(__name__)

class TaskRunner:
    """Intake, scheduling and running of the node's tasks (see the module docstring)."""

    def __init__(
        self,
        *,
        node: NodeName,
        backend: Backend,
        journal: Journal,
        reporter: Reporter,
        brand_of: BrandOf,
        max_parallel: int,
        on_sync_request: Callable[[str], None],
        on_fatal: Callable[[BaseException], None],
        daemon_user: str,
        refusals: Refusals,
        clock: Callable[[], float] = time.time,
        guard_grace: float = 5.0,
    ) -> None:
        self.node = node
        self.daemon_user = daemon_user
        self.refusals = refusals
        self.backend = backend
        self.journal = journal
        self.reporter = reporter
        self.brand_of = brand_of
        self.on_sync_request = on_sync_request
        self.on_fatal = on_fatal
        self.clock = clock
        self.guard_grace = guard_grace
        self.scheduler = Scheduler(max_parallel, launch=self._launch, preempt=self._preempt)
        self.draining = False
        self._side: set[asyncio.Task[object]] = set()
        self._reporting: set[str] = set()  # orphans whose unknown outcome is being reported
        # Counters (tests, logs).
        self.repeats = 0
        self.expired = 0
        self.completed = 0

    # -- intake ----------------------------------------------------------------------------

    async def handle(self, delivery: Delivery) -> None:
        """The task queue's handler: returns at once, the delivery settled or handed on."""
        if delivery.user_id != self.daemon_user:
            self.refusals.refuse(delivery.user_id, "not_daemon",
                                 "order not published by the daemon refused", kind=delivery.type)
            await delivery.ack()
            return
        try:
            order = decode_order(delivery)
        except ProtocolError as exc:
            log.error("malformed order rejected", reason=str(exc))
            await delivery.reject(requeue=False)
            return
        if order.node != self.node:
            reason = f"order for node {order.node!r} reached the agent of node {self.node!r}"
            log.error("order for another node rejected", reason=reason)
            await delivery.reject(requeue=False)
            return
        if isinstance(order, SyncRequest):
            log.info("sync requested", reason=order.reason)
            self.on_sync_request(order.reason)
            await delivery.ack()
            return
        await self._take(order, delivery)

    async def _take(self, task: AgentTask, delivery: Delivery) -> None:
        with log_context(task_id=task.task_id, vm=task.uuid, hostname=task.hostname,
                         node=self.node, action=task.action.value):
            if self.draining:
                await delivery.reject(requeue=True)
                return
            job = self.scheduler.find(task.task_id)
            if job is not None:
                if job.launched:
                    log.info("task delivered again while it runs here: acked")
                    await delivery.ack()
                else:
                    job.delivery = delivery
                return
            entry = self.journal.get(task.task_id) if task.action is not Action.CURRENT else None
            if entry is not None and task.task_id in self._reporting:
                log.info("task delivered again while its unknown outcome is reported: acked")
                await delivery.ack()
                return
            if entry is not None:
                self.repeats += 1
                log.warning("task delivered again after it was started: not run again",
                            redelivered=delivery.redelivered)
                await delivery.ack()
                self._spawn(self._repeat(task, entry), f"repeat:{task.task_id}")
                return
            if task.deadline <= self.clock():
                self.expired += 1
                log.warning("task arrived after its deadline: rejected, not run",
                            late=round(self.clock() - task.deadline, 3))
                await delivery.reject(requeue=False)
                return
            log.debug("task received")  # per task: not at info (docs/performance.md)
            self.scheduler.submit(Job(task, delivery))

    def expire_waiting(self) -> None:
        """Reject the waiting jobs whose deadline passed (called periodically)."""
        for job in self.scheduler.take_expired(self.clock()):
            self.expired += 1
            log.warning("task deadline passed while it waited: rejected, not run",
                        task_id=job.task.task_id, vm=job.task.uuid)
            self._spawn(job.delivery.reject(requeue=False), f"expire:{job.task.task_id}")

    # -- running ---------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, object], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._side.add(task)
        task.add_done_callback(self._side_done)

    def _side_done(self, task: asyncio.Task[object]) -> None:
        self._side.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.on_fatal(exc)

    def _launch(self, job: Job) -> None:
        job.runner = asyncio.create_task(self._run(job), name=f"task:{job.task.task_id}")
        job.runner.add_done_callback(lambda t: self._runner_done(job, t))

    def _runner_done(self, job: Job, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.on_fatal(exc)

    def _preempt(self, old: Job, new: Job) -> None:
        with log_context(task_id=old.task.task_id, vm=old.task.uuid, node=self.node):
            if old.launched:
                log.info("graceful task preempted by a forced stop", by=new.task.task_id)
                self.interrupt(old, f"vmadm {command_of(old.task)} {old.task.hostname} killed: "
                                    f"preempted by the forced stop {new.task.task_id}")
            else:
                log.info("waiting task superseded by a forced stop: rejected, not run",
                         by=new.task.task_id)
                self._spawn(old.delivery.reject(requeue=False), f"superseded:{old.task.task_id}")

    def interrupt(self, job: Job, why: str) -> None:
        """Kill the job's vmadm (cancel: the runner kills the process group / remote
        process); its result reports `why`."""
        if job.interrupted is None:
            job.interrupted = why
        if job.inner is not None and not job.inner.done():
            job.inner.cancel()

    async def _run(self, job: Job) -> None:
        task = job.task
        with log_context(task_id=task.task_id, vm=task.uuid, hostname=task.hostname,
                         node=self.node, action=task.action.value):
            try:
                await self._run_job(job)
            finally:
                self.scheduler.finished(job)

    async def _run_job(self, job: Job) -> None:
        task, delivery = job.task, job.delivery
        if delivery.stale:
            log.info("task's delivery lost with its connection: not run (it comes again)")
            return
        if task.deadline <= self.clock():
            self.expired += 1
            log.warning("task deadline passed before it could start: rejected, not run")
            await delivery.reject(requeue=False)
            return
        journaled = task.action is not Action.CURRENT
        if journaled:
            try:
                await self.journal.started(task.task_id, task.action.value, task.uuid)
            except JournalError as exc:
                log.error("cannot journal the task: not run", error=str(exc))
                await delivery.ack()
                await self._report(task, not_run(f"vmd agent: task not run: {exc}"))
                return
        # A `current` task (a read, at most 30 s) is acked only once its result is reported:
        # if the agent dies meanwhile the broker delivers it again, to the restarted agent,
        # instead of the daemon waiting for its deadline.
        if journaled and not await delivery.ack():
            log.warning("task's ack failed (connection lost): not run (it comes again)")
            await self.journal.dropped(task.task_id)
            return
        self.reporter.hold(task.uuid)
        try:
            outcome = await self._execute(job)
        except BaseException:
            self.reporter.unhold(task.uuid)
            raise
        log.debug("task done", outcome=outcome.kind.value, rc=outcome.returncode,
                  message=outcome.message)
        # vmadm is done: the VM's next task may start while this outcome is recorded and
        # reported (the reporter keeps the order of results). The journal knows the outcome
        # from now on, so a repeat of the task arriving meanwhile gets it too.
        durable = self.journal.finished(task.task_id, outcome) if journaled else None
        self._spawn(self._record(task, outcome, durable, None if journaled else delivery),
                    f"report:{task.task_id}")

    async def _record(self, task: AgentTask, outcome: TaskOutcome,
                      durable: Awaitable[None] | None, unacked: Delivery | None = None) -> None:
        with log_context(task_id=task.task_id, vm=task.uuid, node=self.node):
            # The result carries what was held until now (a watch event behind vmadm's exit).
            report = asyncio.ensure_future(self._report(task, outcome, carry=True))
            if durable is not None:
                try:
                    await durable
                except JournalError as exc:
                    log.error("cannot journal the outcome", error=str(exc))
            await report
            if unacked is not None:
                await unacked.ack()  # False when stale: it comes again, a harmless repeat
            self.completed += 1

    async def _execute(self, job: Job) -> TaskOutcome:
        task = job.task
        loop = asyncio.get_running_loop()
        execution = Execution(self.backend, task, brand_of=self.brand_of, clock=self.clock)
        job.started_at = loop.time()
        inner = job.inner = asyncio.create_task(execution.run(), name=f"vmadm:{task.task_id}")
        if job.interrupted is not None:  # preempted before it got here
            inner.cancel()
        # A last guard beyond the per-call run_timeout: nothing outlives the deadline by more
        # than the time the runner needs to kill and reap.
        guard = max(0.0, task.deadline - self.clock()) + self.guard_grace
        try:
            done, _ = await asyncio.wait({inner}, timeout=guard)
        except asyncio.CancelledError:
            inner.cancel()
            raise
        if not done:
            inner.cancel()
            await asyncio.wait({inner})
            if not inner.cancelled() and inner.exception() is None:
                return inner.result()
            return past_deadline(task)
        if inner.cancelled():
            return killed(task, job.interrupted)
        exc = inner.exception()
        if exc is None:
            return inner.result()
        if isinstance(exc, HostKeyRejected | SshConfigError):
            self.on_fatal(exc)
            return not_run(str(exc))
        raise exc

    def report_orphans(self, entries: Iterable[Entry], hostname_of: Callable[[str], str]) -> int:
        """Report the tasks the previous run of this agent started and never finished (it
        was killed while they ran): outcome unknown, as for a redelivery (step 3), but now.
        Their deliveries were acked when they started, so nothing else would tell the
        daemon, which would keep the VM `starting`/`stopping` until the task's deadline."""
        n = 0
        for entry in entries:
            if self.scheduler.find(entry.task_id) is not None:
                continue  # delivered again and taken meanwhile
            task = AgentTask(entry.task_id, VmUuid(entry.uuid), hostname_of(entry.uuid),
                             self.node, Action(entry.action), {}, entry.started, entry.started)
            self.repeats += 1
            self._reporting.add(entry.task_id)
            self._spawn(self._orphan(task, entry), f"orphan:{entry.task_id}")
            n += 1
        return n

    async def _orphan(self, task: AgentTask, entry: Entry) -> None:
        try:
            await self._repeat(task, entry)
        finally:
            self._reporting.discard(task.task_id)

    async def _repeat(self, task: AgentTask, entry: Entry) -> None:
        with log_context(task_id=task.task_id, vm=task.uuid, node=self.node):
            outcome = entry.outcome
            if outcome is None:
                outcome = await unknown(self.backend, task)
                try:
                    await self.journal.finished(task.task_id, outcome)
                except JournalError as exc:
                    log.error("cannot journal the outcome", error=str(exc))
            await self._report(task, outcome)

    async def _report(self, task: AgentTask, outcome: TaskOutcome, *, carry: bool = False
                      ) -> None:
        held = self.reporter.take(task.uuid) if carry else ()
        await self.reporter.send(TaskResult(task.task_id, VmUuid(task.uuid), self.node,
                                            task.action, outcome, self.clock(), held))

    # -- shutdown --------------------------------------------------------------------------

    def running(self) -> set[asyncio.Task[Any]]:
        tasks: set[asyncio.Task[Any]] = {
            j.runner for j in self.scheduler.running if j.runner is not None}
        return {t for t in tasks | self._side if not t.done()}

    async def wait(self, timeout: float, hurry: asyncio.Event | None = None) -> int:
        """Wait until every running job and side task ended, up to `timeout` (or until
        `hurry` is set); return how many are still running."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while (tasks := self.running()) and (left := end - loop.time()) > 0:
            waiters: set[asyncio.Future[Any]] = set(tasks)
            hurried = None
            if hurry is not None:
                hurried = asyncio.ensure_future(hurry.wait())
                waiters.add(hurried)
            try:
                await asyncio.wait(waiters, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if hurried is not None:
                    hurried.cancel()
            if hurry is not None and hurry.is_set():
                break
        return len(self.running())

    def interrupt_all(self, why: Callable[[Job, float], str]) -> int:
        """Kill every running vmadm; `why(job, seconds_it_ran)` is its reported reason."""
        loop = asyncio.get_running_loop()
        n = 0
        for job in list(self.scheduler.running):
            if job.inner is not None and not job.inner.done():
                ran = loop.time() - (job.started_at or loop.time())
                self.interrupt(job, why(job, ran))
                n += 1
        return n

    async def cancel_all(self) -> None:
        """Last resort at the very end: cancel what still runs (reports not confirmed)."""
        tasks = self.running()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
