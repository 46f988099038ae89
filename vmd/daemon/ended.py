"""Ended tasks kept in memory for a while, then left to the store.

`GET /task/<id>/status` of a task that ended recently (the usual poll after a 201) is
answered from memory; the store keeps ended tasks 24 h for later reads. So an ended task
stays in the world's `TaskBook` for `Options.keep_ended_seconds` (600 s), and at most
`Options.keep_ended` (10,000) of them: past the count the oldest goes at once, so a burst
of short tasks cannot grow memory; past the time the housekeeping forgets them
(vmd.daemon.reconcile). Both look at the front of one queue in order of ending: O(1) each.
"""

from __future__ import annotations

from collections import deque

from vmd.fsm import TaskBook
from vmd.model import TaskId


class EndedTasks:
    """The ended tasks still in memory, oldest first."""

    __slots__ = ("_ended", "_keep", "_keep_seconds", "_tasks")

    def __init__(self, tasks: TaskBook, *, keep: int, keep_seconds: float) -> None:
        self._tasks = tasks
        self._keep = keep
        self._keep_seconds = keep_seconds
        self._ended: deque[tuple[float, TaskId]] = deque()

    def ended(self, task_id: TaskId, at: float) -> None:
        """Task `task_id` ended at `at`: kept, and the oldest forgotten past the count."""
        self._ended.append((at, task_id))
        if len(self._ended) > self._keep:
            self._tasks.forget((self._ended.popleft()[1],))

    def forget_old(self, now: float) -> int:
        """Drop ended tasks older than `keep_seconds` from memory; how many."""
        cutoff = now - self._keep_seconds
        ids = []
        ended = self._ended
        while ended and ended[0][0] < cutoff:
            ids.append(ended.popleft()[1])
        self._tasks.forget(ids)
        return len(ids)
