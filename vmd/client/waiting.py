"""Waiting for a task's final reply: progress ticks and the polling fallback's pace.

Kept apart from the client so its schedule is one readable table. The tick schedule is the
keep-alive schedule of the upstream API's stream mode (esdc `api/middleware.py`: a space
every 1 s for the first 5 s, every 3 s up to 30 s, 6 s up to 60 s, 12 s up to 20 min, 30 s
afterwards), which is what `es` turns into its progress dots: a user of vmctl sees the same
rhythm.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from vmd.model import Reply

# (waited less than, tick every) in seconds; the last interval applies beyond the table.
_TICKS: tuple[tuple[float, float], ...] = ((5.0, 1.0), (30.0, 3.0), (60.0, 6.0), (1200.0, 12.0))
_LAST_TICK = 30.0

# The polling fallback (after a lost reply) asks the task's status at this pace.
_POLL_FIRST = 0.25
_POLL_MAX = 2.0


@dataclass(frozen=True, slots=True)
class Waiting:
    """What a progress callback is told: the pending task, how long we have waited, and
    the tick number (0 once, when the 201 PENDING arrives; then 1, 2, ...)."""

    task_id: str
    pending: Reply
    elapsed: float
    tick: int


Progress = Callable[[Waiting], object]


def tick_interval(elapsed: float) -> float:
    """Seconds until the next progress tick, `elapsed` seconds into the wait."""
    for limit, every in _TICKS:
        if elapsed < limit:
            return every
    return _LAST_TICK


def poll_interval(polls: int) -> float:
    """Seconds before poll number `polls` (0-based) of `GET /task/<id>/status`."""
    return min(_POLL_FIRST * 2.0 ** min(polls, 16), _POLL_MAX)


class Ticker:
    """Calls `progress` at tick 0 now and then on the schedule, until `stop()`.

    A callback that raises is a bug of the caller: the exception is kept and re-raised by
    `stop()`, so it is neither lost nor allowed to kill the wait midway silently.
    """

    def __init__(self, progress: Progress | None, pending: Reply, task_id: str) -> None:
        self._progress = progress
        self._pending = pending
        self._task_id = task_id
        self._task: asyncio.Task[None] | None = None
        self._start = 0.0

    def start(self) -> None:
        if self._progress is None:
            return
        loop = asyncio.get_running_loop()
        self._start = loop.time()
        self._progress(Waiting(self._task_id, self._pending, 0.0, 0))
        self._task = asyncio.create_task(self._run(), name=f"vmd-client-progress:{self._task_id}")

    async def _run(self) -> None:
        assert self._progress is not None
        loop = asyncio.get_running_loop()
        tick = 0
        next_at = self._start
        while True:
            next_at += tick_interval(next_at - self._start)
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            tick += 1
            self._progress(Waiting(self._task_id, self._pending, loop.time() - self._start, tick))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        if task.done():
            task.result()  # a callback that raised: re-raise it here
            return
        task.cancel()
        # asyncio.wait, not `await task`: a cancellation of our own caller must propagate.
        await asyncio.wait((task,))
