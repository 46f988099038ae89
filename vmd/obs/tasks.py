"""Guarded long-lived tasks: the one runner idiom of `vmd daemon`, `vmd agent` and `vmd api`.

Each process runs a handful of long-lived concerns (a pipeline stage, a timer, the watchdog,
a watcher of the broker link), each a coroutine that runs until cancelled
(docs/architecture.md rule 3). A `Supervisor` is where a process declares them, by name, in
one place (`declare`), and starts each at its step of the start-up (`start`); it turns the
end of any of them into one answer for the process's runner:

- a task that raises, or returns while it must run until cancelled, is a *crash*; so is a
  fatal error a part reports itself (`fail`: the agent's syncer, the gateway's forwarder,
  which see it inside a short-lived task of their own);
- the first crash is logged once, with the task's name and the error (a second one is a
  consequence, logged at debug), `STATUS=` tells systemd why the process stops, and
  `crashed()` / `until_stopped()` return it to the runner, which then shuts down its way;
- its exit code is the process's classification of the error (`known`: errors an operator
  or the environment causes, a one-line message; anything else is an internal error, a bug:
  critical, with its traceback, exit 1);
- `stop(*names)` cancels tasks in the order the shutdown needs them gone, and `stop()` the
  rest in the order they were declared; a task's end while it is being stopped is no crash.

Why not `asyncio.TaskGroup`: a group cancels all its tasks at the first failure and at its
end, at once; a vmd process instead drains in steps (docs/shutdown.md) and stops each task
at its step, so the runner must keep the order in its own hands. This is kopf's
`aiotasks` idea (guarded, named tasks and one place that decides), in its smallest form.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from vmd.obs import systemd
from vmd.obs.logging import get_logger
from vmd.obs.systemd import ExitCode

__all__ = ["Crash", "Supervisor"]

log = get_logger(__name__)

LongLived = Coroutine[Any, Any, None]


@dataclass(frozen=True, slots=True)
class Crash:
    """Why a process stops on its own: which task, what went wrong, the exit code."""

    task: str
    error: BaseException
    code: ExitCode
    known: bool  # an error of `Supervisor.known` (one line), not an internal error

    @property
    def reason(self) -> str:
        return str(self.error) if self.known else f"internal error in {self.task}"


class Supervisor:
    """The named long-lived tasks of one process (`process`: "vmd daemon", ...).

    `known` maps error classes an operator or the environment causes (a rejected SSH host
    key, the broker link failing for good) to their exit code; the first matching class in
    its order wins. Everything else is an internal error, exit 1. `notify` is the
    process's one `systemd.Notifier` (READY, STATUS, STOPPING go through it).
    """

    def __init__(self, process: str,
                 known: Mapping[type[BaseException], ExitCode] | None = None, *,
                 notify: systemd.Notifier | None = None) -> None:
        self.process = process
        self.known = dict(known or {})
        self.notify = notify or systemd.Notifier()
        self._declared: dict[str, tuple[Callable[[], LongLived], bool]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping: set[str] = set()
        self._crash: Crash | None = None
        self._crashed = asyncio.Event()

    # -- declaring and starting --------------------------------------------------------------

    def declare(self, name: str, run: Callable[[], LongLived], *,
                may_return: bool = False) -> None:
        """Name a long-lived task: `run()` makes its coroutine when it is started.

        `may_return`: its clean return is not a crash (a watcher that ends when its owner
        closes what it watches); an exception still is.
        """
        if name in self._declared:
            raise ValueError(f"{self.process}: the task {name!r} is declared twice")
        self._declared[name] = (run, may_return)

    def start(self, *names: str) -> None:
        """Start the declared tasks `names`, in that order."""
        for name in names:
            if name in self._tasks:
                raise ValueError(f"{self.process}: the task {name!r} is already running")
            run, may_return = self._declared[name]
            task = asyncio.create_task(run(), name=f"{self.process}:{name}")
            self._tasks[name] = task
            task.add_done_callback(functools.partial(self._ended, name, may_return))

    @property
    def names(self) -> list[str]:
        """The tasks running, in the order they were declared."""
        return [name for name in self._declared if name in self._tasks]

    def task(self, name: str) -> asyncio.Task[None]:
        return self._tasks[name]

    # -- crashes -----------------------------------------------------------------------------

    def fail(self, name: str, error: BaseException) -> None:
        """Report a fatal error found by the part `name` itself: a crash like a task's."""
        if self._crash is not None:
            log.debug("after the crash: another error", process=self.process, task=name,
                      error=repr(error))
            return
        crash = self._classify(name, error)
        self._crash = crash
        if crash.known:
            log.error(f"{self.process} stops: {error}", task=name)
        else:
            log.critical(f"internal error: {self.process} stops", task=name,
                         error=repr(error), exc_info=error)
        self.notify.status(f"stopping: {crash.reason}")
        self._crashed.set()

    @property
    def crash(self) -> Crash | None:
        """The first crash, or None."""
        return self._crash

    async def crashed(self) -> Crash:
        """Wait for the first crash and return it."""
        await self._crashed.wait()
        assert self._crash is not None
        return self._crash

    async def until_stopped(self, stop: asyncio.Event) -> Crash | None:
        """Wait until `stop` is set (None) or a task crashes (the crash), whichever first."""
        await self._first(stop)
        return self._crash

    async def reached(self, event: asyncio.Event, stop: asyncio.Event) -> bool:
        """Wait for `event`; False when `stop` or a crash came first."""
        await self._first(stop, event)
        return event.is_set() and not stop.is_set() and self._crash is None

    async def _first(self, *events: asyncio.Event) -> None:
        waits = [asyncio.ensure_future(e.wait()) for e in (self._crashed, *events)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def _classify(self, name: str, error: BaseException) -> Crash:
        for kind, code in self.known.items():
            if isinstance(error, kind):
                return Crash(name, error, code, known=True)
        return Crash(name, error, ExitCode.FAILED, known=False)

    def _ended(self, name: str, may_return: bool, task: asyncio.Task[None]) -> None:
        stopping = name in self._stopping
        if self._tasks.get(name) is task:
            del self._tasks[name]
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.fail(name, error)
        elif not (may_return or stopping):
            self.fail(name, RuntimeError(f"{name} stopped on its own"))

    # -- stopping ----------------------------------------------------------------------------

    async def stop(self, *names: str) -> None:
        """Cancel the tasks `names` in that order (none: every task left, in declared order)
        and wait until they ended. Unknown or ended names are skipped."""
        chosen = [(n, self._tasks[n]) for n in (names or self.names) if n in self._tasks]
        for name, task in chosen:
            self._stopping.add(name)
            task.cancel()
        if chosen:
            # Not `await task`: how a task ended was handled by `_ended`.
            await asyncio.wait([task for _, task in chosen])
        self._stopping.difference_update(name for name, _ in chosen)
