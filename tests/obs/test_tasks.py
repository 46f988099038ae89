"""vmd.obs.tasks.Supervisor with real asyncio tasks: what counts as a crash, the one log line,
the exit code, and the order of stopping. Every wait is on an event; none sleeps."""

from __future__ import annotations

import asyncio
import functools
import socket
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from vmd.obs.systemd import ExitCode, Notifier
from vmd.obs.tasks import Crash, Supervisor


class OperatorError(Exception):
    """Stands for an error an operator must fix (a rejected host key)."""


async def forever(started: asyncio.Event | None = None) -> None:
    if started is not None:
        started.set()
    await asyncio.Event().wait()


async def boom(after: asyncio.Event) -> None:
    await after.wait()
    raise ValueError("boom")


async def test_an_exception_is_one_crash_with_its_task_name_and_exit_1() -> None:
    tasks = Supervisor("vmd test")
    go = asyncio.Event()
    tasks.declare("quiet", forever)
    tasks.declare("faulty", lambda: boom(go))
    tasks.start("quiet", "faulty")
    with capture_logs() as logs:
        go.set()
        crash = await asyncio.wait_for(tasks.crashed(), 5)
    assert (crash.task, crash.code, crash.known) == ("faulty", ExitCode.FAILED, False)
    assert isinstance(crash.error, ValueError)
    assert tasks.crash is crash
    [line] = logs
    assert line["event"] == "internal error: vmd test stops"
    assert (line["log_level"], line["task"], line["error"]) == (
        "critical", "faulty", "ValueError('boom')")
    assert line["exc_info"] is crash.error  # the traceback goes with the one line
    assert tasks.names == ["quiet"]  # the others run on: the runner shuts down its way
    await tasks.stop()
    assert tasks.names == []


async def test_returning_is_a_crash_unless_the_task_may_return() -> None:
    tasks = Supervisor("vmd test")

    async def done() -> None:
        return None

    tasks.declare("watcher", done, may_return=True)
    tasks.declare("loop", done)
    tasks.start("watcher")
    await asyncio.wait([tasks.task("watcher")])
    assert tasks.crash is None
    tasks.start("loop")
    crash = await asyncio.wait_for(tasks.crashed(), 5)
    assert crash.task == "loop"
    assert str(crash.error) == "loop stopped on its own"


async def test_a_known_error_is_one_line_without_traceback_and_its_exit_code() -> None:
    tasks = Supervisor("vmd test", known={OperatorError: ExitCode.CONFIG})
    with capture_logs() as logs:
        tasks.fail("syncer", OperatorError("host key not accepted for node1"))
    crash = tasks.crash
    assert crash is not None
    assert crash == Crash("syncer", crash.error, ExitCode.CONFIG, known=True)
    assert crash.reason == "host key not accepted for node1"
    [line] = logs
    assert line == {"event": "vmd test stops: host key not accepted for node1",
                    "log_level": "error", "task": "syncer", "logger_name": "vmd.obs.tasks"}


async def test_only_the_first_crash_is_the_reason() -> None:
    tasks = Supervisor("vmd test", known={OperatorError: ExitCode.CONFIG})
    with capture_logs() as logs:
        tasks.fail("runner", RuntimeError("first"))
        tasks.fail("syncer", OperatorError("second"))
    assert tasks.crash is not None and str(tasks.crash.error) == "first"
    assert tasks.crash.code is ExitCode.FAILED
    assert [line["log_level"] for line in logs] == ["critical", "debug"]


async def test_stop_cancels_in_the_given_order_then_the_rest_in_declared_order() -> None:
    tasks = Supervisor("vmd test")
    ended: list[str] = []

    async def part(name: str, started: asyncio.Event) -> None:
        try:
            await forever(started)
        finally:
            ended.append(name)

    names = ["watchdog", "writer", "timer", "monitor", "lag"]
    started = {name: asyncio.Event() for name in names}
    for name in names:
        tasks.declare(name, functools.partial(part, name, started[name]))
    tasks.start("lag", "writer", "watchdog", "timer", "monitor")  # not the declared order
    for event in started.values():
        await event.wait()
    await tasks.stop("monitor", "timer")
    assert ended == ["monitor", "timer"]
    await tasks.stop("writer", "gone")  # an unknown name is skipped
    await tasks.stop()
    assert ended == ["monitor", "timer", "writer", "watchdog", "lag"]
    assert tasks.crash is None  # being stopped is no crash


async def test_a_task_that_swallows_its_cancellation_is_no_crash_but_a_failing_cleanup_is() -> None:
    tasks = Supervisor("vmd test")
    started = asyncio.Event()

    async def swallow() -> None:
        try:
            await forever(started)
        except asyncio.CancelledError:
            return

    async def bad_cleanup(ready: asyncio.Event) -> None:
        try:
            await forever(ready)
        finally:
            raise OSError("cleanup failed")

    cleanup_started = asyncio.Event()
    tasks.declare("swallow", swallow)
    tasks.declare("cleanup", lambda: bad_cleanup(cleanup_started))
    tasks.start("swallow", "cleanup")
    await started.wait()
    await cleanup_started.wait()
    await tasks.stop("swallow")
    assert tasks.crash is None
    with capture_logs():
        await tasks.stop("cleanup")
    assert tasks.crash is not None and tasks.crash.task == "cleanup"


async def test_until_stopped_and_reached() -> None:
    tasks = Supervisor("vmd test")
    stop, synced = asyncio.Event(), asyncio.Event()
    synced.set()
    assert await tasks.reached(synced, stop) is True
    stop.set()
    assert await tasks.reached(synced, stop) is False  # a shutdown came first
    assert await tasks.until_stopped(stop) is None

    tasks = Supervisor("vmd test")
    stop, synced = asyncio.Event(), asyncio.Event()
    waiting = asyncio.ensure_future(tasks.reached(synced, stop))
    serving = asyncio.ensure_future(tasks.until_stopped(stop))
    with capture_logs():
        tasks.fail("bus", RuntimeError("the bus stopped"))
    assert await asyncio.wait_for(waiting, 5) is False
    crash = await asyncio.wait_for(serving, 5)
    assert crash is not None and crash.task == "bus"


async def test_a_name_is_declared_once_and_runs_once() -> None:
    tasks = Supervisor("vmd test")
    tasks.declare("timer", forever)
    with pytest.raises(ValueError, match="'timer' is declared twice"):
        tasks.declare("timer", forever)
    tasks.start("timer")
    with pytest.raises(ValueError, match="'timer' is already running"):
        tasks.start("timer")
    await tasks.stop()
    tasks.start("timer")  # stopped: it may run again
    assert tasks.names == ["timer"]
    await tasks.stop()


async def test_the_crash_reason_is_the_status_systemd_shows(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.setblocking(False)
        tasks = Supervisor("vmd test", {OperatorError: ExitCode.CONFIG},
                           notify=Notifier({"NOTIFY_SOCKET": path}))
        with capture_logs():
            tasks.fail("syncer", OperatorError("host key not accepted"))
            tasks.fail("runner", RuntimeError("a consequence"))
        assert sock.recv(4096) == b"STATUS=stopping: host key not accepted"
        with pytest.raises(BlockingIOError):
            sock.recv(4096)  # the second error is no reason: nothing more was sent
