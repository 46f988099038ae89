"""A crash of one of the daemon's long-lived tasks (vmd.obs.tasks.Supervisor) ends `serve` at
once: one critical line naming the task and the error, no drain (`Daemon.abort`), exit 1,
for systemd to restart the unit (docs/shutdown.md, "A crash is not a signal")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from structlog.testing import capture_logs

from vmd import config
from vmd.daemon.runner import serve
from vmd.obs.systemd import ExitCode

from .conftest import daemon_options
from .harness import eventually


async def test_a_crashed_task_stops_the_daemon_once_without_a_drain(
    write_config: Callable[..., Path],
) -> None:
    broken = asyncio.Event()

    def clock() -> float:
        # Once broken, the first loop that reads the clock (deadlines, node monitor or
        # housekeeping: nothing else runs without a request) raises: an internal error.
        if broken.is_set():
            raise RuntimeError("the clock broke")
        return time.time()

    settings = config.load(write_config(), sections=("broker", "daemon"))
    stop = asyncio.Event()  # never set: only the crash ends `serve`
    with capture_logs() as logs:
        serving = asyncio.create_task(serve(settings, daemon_options(clock=clock), stop=stop))
        await eventually(lambda: any(line["event"] == "ready" for line in logs), what="ready")
        broken.set()
        code = await asyncio.wait_for(serving, 20)
    assert code == ExitCode.FAILED
    [crash] = [line for line in logs if line["log_level"] == "critical"]
    assert crash["event"] == "internal error: vmd daemon stops"
    assert crash["task"] in ("deadlines", "node-monitor", "housekeeping")
    assert crash["error"] == "RuntimeError('the clock broke')"
    assert isinstance(crash["exc_info"], RuntimeError)  # its traceback goes with the line
    events = [line["event"] for line in logs]
    assert "draining" not in events and "shutdown complete" not in events  # no drain
