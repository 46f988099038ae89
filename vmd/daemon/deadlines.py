"""Task deadlines: every task ends by its deadline (docs/fsm.md §3.6), also across restarts.

A heap of (deadline, task_id), armed when a task is created or restored. The timer looks at
the injectable clock every `tick` seconds (or sooner, when the earliest deadline is nearer)
and hands every due task to the daemon's decision step, which ends it with
`vmd.fsm.expire_task` (REVOKED `Task deadline exceeded`; the VM leaves its transitional
status; a re-sync is queued). Entries of tasks that ended otherwise are dropped when they
come due: no removal from the middle of the heap.

Deadlines are absolute POSIX times stored with the task, so after a restart the runner
pushes every pending task again and expires those already due before it reports ready.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable

from vmd.daemon.options import Clock
from vmd.model import Task, TaskId


class Deadlines:
    """A min-heap of task deadlines (pure data: the daemon decides what a due task means)."""

    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._heap: list[tuple[float, TaskId]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, task: Task) -> None:
        heapq.heappush(self._heap, (task.deadline, task.task_id))

    def next(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[TaskId]:
        """Pop and return the ids whose deadline is at or before `now`, earliest first."""
        heap = self._heap
        out: list[TaskId] = []
        while heap and heap[0][0] <= now:
            out.append(heapq.heappop(heap)[1])
        return out


async def run_deadlines(
    *, deadlines: Deadlines, expire: Callable[[float], int], clock: Clock, tick: float
) -> None:
    """Expire due tasks until cancelled (`expire(now)` is the daemon's decision step)."""
    while True:
        now = clock()
        expire(now)
        nxt = deadlines.next()
        delay = tick if nxt is None else min(tick, max(0.0, nxt - clock()))
        await asyncio.sleep(delay)
