"""Which task runs when: several VMs in parallel, one task per VM, a forced stop at once.

The rules (docs/agent.md):

- At most `max_parallel` tasks run at once; the others wait in arrival order.
- One power task (start, stop, reboot) per VM at a time: a VM's next task waits until its
  current one has ended (its *holder*, running or waiting for a free slot).
- Except a forced stop while the VM's holder is a graceful stop or reboot: the forced stop
  starts at once, beside it and regardless of `max_parallel`, and the graceful one is
  *preempted* (the agent kills its vmadm; the daemon has already revoked it).
- `current` tasks read the node and change nothing, so they never wait for a VM (a GET of
  a VM that is stopping for minutes must answer within its 30 s deadline); they do take a
  slot.

This module is the policy only, synchronous and without I/O: `launch(job)` and
`preempt(old, new)` are the caller's (the agent's `TaskRunner`), which calls `finished(job)`
when a launched job has ended. Deliveries of jobs that never launched are settled by the
caller: `take_expired` (deadline passed while waiting: dead-letter) and `take_waiting`
(shutdown: requeue).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from vmd.bus import AgentTask, Delivery
from vmd.model import Action, TaskOutcome, VmUuid


@dataclass(eq=False)
class Job:
    """One task in this agent: its delivery (until settled) and, once launched, its run."""

    task: AgentTask
    delivery: Delivery
    launched: bool = False
    runner: asyncio.Task[None] | None = None  # the TaskRunner's coroutine for it
    inner: asyncio.Task[TaskOutcome] | None = None  # the vmadm call(s), cancelled to kill
    started_at: float | None = None  # loop time when vmadm started
    # Why its vmadm was killed (preempted, shutdown); the reported outcome says so.
    interrupted: str | None = None

    @property
    def force_stop(self) -> bool:
        return self.task.action is Action.STOP and self.task.params.get("force") is True

    @property
    def graceful(self) -> bool:
        """A graceful stop or reboot: what a forced stop preempts."""
        return (self.task.action in (Action.STOP, Action.REBOOT)
                and self.task.params.get("force") is not True)


@dataclass
class _Vm:
    holder: Job | None = None
    queue: deque[Job] = field(default_factory=deque)


class Scheduler:
    """The policy of the module docstring; `launch` starts a job, `preempt` kills one."""

    def __init__(
        self,
        max_parallel: int,
        *,
        launch: Callable[[Job], None],
        preempt: Callable[[Job, Job], None],
    ) -> None:
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        self.max_parallel = max_parallel
        self._launch = launch
        self._preempt = preempt
        self._vms: dict[VmUuid, _Vm] = {}
        self._ready: deque[Job] = deque()  # may run once a slot is free
        self.running: set[Job] = set()
        self._by_id: dict[str, Job] = {}

    # -- views -----------------------------------------------------------------------------

    def find(self, task_id: str) -> Job | None:
        """The job of a task that is waiting or running here."""
        return self._by_id.get(task_id)

    @property
    def waiting(self) -> int:
        return len(self._by_id) - len(self.running)

    # -- changes ---------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        self._by_id[job.task.task_id] = job
        if job.task.action is Action.CURRENT:
            self._ready.append(job)
            self._pump()
            return
        vm = self._vms.setdefault(job.task.uuid, _Vm())
        holder = vm.holder
        if holder is None:
            vm.holder = job
            self._ready.append(job)
            self._pump()
        elif job.force_stop and holder.graceful:
            vm.holder = job
            if not holder.launched:
                # Not started yet: it never will (`preempt` settles its delivery).
                self._ready.remove(holder)
                del self._by_id[holder.task.task_id]
            self._start(job)
            self._preempt(holder, job)
        else:
            vm.queue.append(job)

    def finished(self, job: Job) -> None:
        """A launched job ended (or a job was given up): the next may start."""
        self.running.discard(job)
        if self._by_id.get(job.task.task_id) is job:
            del self._by_id[job.task.task_id]
        if job.task.action is not Action.CURRENT:
            vm = self._vms.get(job.task.uuid)
            if vm is not None and vm.holder is job:
                vm.holder = vm.queue.popleft() if vm.queue else None
                if vm.holder is not None:
                    self._ready.append(vm.holder)
            if vm is not None and vm.holder is None and not vm.queue:
                del self._vms[job.task.uuid]
        self._pump()

    def take_expired(self, now: float) -> list[Job]:
        """Remove and return the jobs not launched whose deadline (wall clock) passed."""
        expired = [j for j in self._by_id.values()
                   if not j.launched and j.task.deadline <= now]
        self._remove(expired)
        return expired

    def take_waiting(self) -> list[Job]:
        """Remove and return every job not launched (shutdown: they go back to the queue)."""
        waiting = [j for j in self._by_id.values() if not j.launched]
        self._remove(waiting)
        return waiting

    def _remove(self, jobs: list[Job]) -> None:
        gone = set(jobs)
        if not gone:
            return
        self._ready = deque(j for j in self._ready if j not in gone)
        for job in jobs:
            del self._by_id[job.task.task_id]
            vm = self._vms.get(job.task.uuid)
            if vm is None:
                continue
            vm.queue = deque(j for j in vm.queue if j not in gone)
            if vm.holder is job:
                vm.holder = vm.queue.popleft() if vm.queue else None
                if vm.holder is not None and not vm.holder.launched:
                    self._ready.append(vm.holder)
            if vm.holder is None and not vm.queue:
                del self._vms[job.task.uuid]
        self._pump()

    def _pump(self) -> None:
        while self._ready and len(self.running) < self.max_parallel:
            self._start(self._ready.popleft())

    def _start(self, job: Job) -> None:
        job.launched = True
        self.running.add(job)
        self._launch(job)
