"""vmctl's progress on stderr: es's waiting line with the time waited, and a line for a slow
first answer.

- A task: `Waiting for pending task <id> ....` as es prints it (a dot per keep-alive tick
  of the upstream stream schedule, vmd.client.waiting), ended by the seconds waited:
  `Waiting for pending task 0-a2327793-2600-423d-9f07 ....... 7.2s`. On a terminal the
  line is redrawn at each tick with the time so far.
- Anything slow before vmd's first answer (connecting, a busy or stopped vmd): on a
  terminal only, after `SLOW_AFTER` seconds, `Waiting for vmd's answer ... 3s`, redrawn
  every second and erased when the answer comes. Scripts (stderr not a terminal) see
  nothing of it, so their stderr stays as es's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from vmd.client import Reply, Waiting

SLOW_AFTER = 1.0
_CLEAR = "\r\x1b[K"  # back to the start of the line, erase it


@dataclass(slots=True)
class ProgressLine:
    """The progress callback of `Client.request` plus the slow-answer line."""

    stream: TextIO
    tty: bool = False
    clock: Callable[[], float] = time.monotonic
    pending: Reply | None = None
    task_id: str | None = None
    _started: float = 0.0
    _dots: int = 0
    _open: bool = False  # the waiting line is on screen, without its newline
    _slow_shown: bool = False
    _answered: bool = field(default=False)

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _task_line(self, elapsed: float) -> str:
        dots = "." * self._dots + " " if self._dots else ""
        return f"Waiting for pending task {self.task_id} {dots}{elapsed:.1f}s"

    def __call__(self, waiting: Waiting) -> None:
        if waiting.tick == 0:
            self.answered()
            self.pending, self.task_id = waiting.pending, waiting.task_id
            self._started = self.clock()
            self._open = True
            self._write(f"Waiting for pending task {waiting.task_id} ")
            return
        self._dots += 1
        if self.tty:
            self._write(_CLEAR + self._task_line(self.clock() - self._started))
        else:
            self._write(".")

    def end_line(self) -> None:
        """End the waiting line with the time waited (a no-op when none is open)."""
        self.answered()
        if not self._open:
            return
        self._open = False
        elapsed = self.clock() - self._started
        if self.tty:
            self._write(_CLEAR + self._task_line(elapsed) + "\n")
        else:
            self._write(f"{' ' if self._dots else ''}{elapsed:.1f}s\n")

    def answered(self) -> None:
        """vmd's first answer came (or the request ended): no more slow-answer line."""
        self._answered = True
        if self._slow_shown:
            self._slow_shown = False
            self._write(_CLEAR)

    async def slow_answer(self) -> None:
        """Run until cancelled: on a terminal, show the seconds waited for the first answer
        once it takes longer than `SLOW_AFTER`."""
        if not self.tty:
            return
        start = self.clock()
        await asyncio.sleep(SLOW_AFTER)
        while not self._answered:
            self._slow_shown = True
            self._write(f"{_CLEAR}Waiting for vmd's answer ... {self.clock() - start:.0f}s")
            await asyncio.sleep(1.0)
