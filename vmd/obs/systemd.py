"""The systemd notify protocol, by hand, and a watchdog fed from the event loop.

Every lifecycle message of `vmd daemon`, `vmd agent` and `vmd api` goes out through here:
`Notifier` (READY, STATUS, STOPPING, and STATUS with EXTEND_TIMEOUT_USEC while the first
connect retries; one per process, held by its `vmd.obs.tasks.Supervisor`) and
`watchdog_loop` (WATCHDOG, a task each process declares).

Why hand-written: the protocol is one datagram to `$NOTIFY_SOCKET` (systemd's own MIT-0
example and gunicorn do the same); the PyPI packages add nothing.
Every function is a no-op returning False when `$NOTIFY_SOCKET` is unset (run by hand, in
tests, on SmartOS under SMF) and never raises for a socket that went away: losing a status
message must not take the service down.

Why the watchdog runs on the event loop and not in a thread: its purpose is to prove the
loop still turns. A loop wedged by a blocking call stops the pings and systemd restarts the
unit after `WatchdogSec=`.
"""

from __future__ import annotations

import asyncio
import enum
import os
import socket
from collections.abc import Callable, Mapping


class ExitCode(enum.IntEnum):
    """The exit codes of `vmd daemon`, `vmd agent` and `vmd api` (one set for the three).

    The units ship `RestartPreventExitStatus=2`: systemd restarts on `FAILED` (the broker
    is down, it may come back) and not on `CONFIG` (an operator must act).
    """

    OK = 0  # after a drain (SIGTERM/SIGINT), or stopped while waiting for the broker
    FAILED = 1  # the broker cannot be reached at start, or a failure restarting may cure
    CONFIG = 2  # a configuration, store, SSH setting or address an operator must fix
    # The daemon lost its lease to another one (docs/ha.md): restarted as a standby.
    FENCED = 3

# systemd asks for pings at half the timeout (sd_watchdog_enabled(3)).
_PING_FRACTION = 0.5


def notify(message: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send `message` ("KEY=value" lines) to systemd; True when it was sent."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace (Linux)
    elif not address.startswith("/"):
        return False  # vsock:... and others: not used by the units we ship
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Never block the event loop: a reader that does not drain its queue (systemd
            # stuck, a test harness) costs this one datagram, not a frozen process.
            sock.setblocking(False)
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True


# While the first connect waits for the broker, each report moves systemd's start timeout
# (TimeoutStartSec=) to this long after the next attempt: enough for that attempt and the
# rest of the start. A start that stops reporting (wedged) still times out.
START_MARGIN = 90.0


class Notifier:
    """What one process tells systemd about its lifecycle, sent from this one place.

    `vmd daemon`, `vmd agent` and `vmd api` each hold one (their `Supervisor`'s `notify`):
    `ready` once consuming, `status` for `systemctl status` (sent only when the text
    changes, so a periodic caller costs nothing), `stopping` once the state is safe
    (docs/shutdown.md), `waiting_for_broker` while the first connect retries (the process
    gives it to its `BusSettings` as `on_connect_retry`). The watchdog is the
    `watchdog_loop` task each process declares.

    One object per process because STATUS= is one value at systemd: `last` is what
    `systemctl status` shows now, whichever method sent it, so `status` never skips a text
    because an older one looked the same.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = environ
        self.last = ""  # the STATUS= last sent

    def ready(self, status: str) -> bool:
        self.last = _one_line(status)
        return notify(f"READY=1\nSTATUS={self.last}", environ=self.environ)

    def status(self, text: str) -> bool:
        line = _one_line(text)
        if line == self.last:
            return False
        self.last = line
        return notify(f"STATUS={line}", environ=self.environ)

    def stopping(self, status: str) -> bool:
        self.last = _one_line(status)
        return notify(f"STOPPING=1\nSTATUS={self.last}", environ=self.environ)

    def waiting_for_broker(self, attempt: int, error: str, delay: float) -> bool:
        """The first connect failed `attempt` times, the next try in `delay` s (a
        `vmd.bus.RetryHook`).

        `systemctl status` shows `waiting for the broker (attempt N, last error ...)`, and
        EXTEND_TIMEOUT_USEC keeps the unit in "activating" rather than failed for as long as
        the attempts go on (systemd.service(5), sd_notify(3)). Sent every attempt (the
        extension must be renewed even when the error text repeats).
        """
        self.last = _one_line(f"waiting for the broker (attempt {attempt}, last error: {error})")
        extend = int((delay + START_MARGIN) * 1e6)
        return notify(f"STATUS={self.last}\nEXTEND_TIMEOUT_USEC={extend}", environ=self.environ)


def _one_line(text: str) -> str:
    # A newline would start a new KEY=value assignment in the datagram.
    return " ".join(text.splitlines())


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings, or None when systemd's watchdog is not on for this process.

    `$WATCHDOG_USEC` is the timeout; `$WATCHDOG_PID`, when set, names the process it is meant
    for (a child that inherited the environment must not ping for its parent).
    """
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1e6 * _PING_FRACTION


async def watchdog_loop(
    *,
    interval: float | None = None,
    environ: Mapping[str, str] | None = None,
    healthy: Callable[[], bool] | None = None,
) -> None:
    """Ping the watchdog from this event loop until cancelled.

    `interval` defaults to `watchdog_interval(environ)`. When the watchdog is off, it waits
    until cancelled without pinging, so the runner can start it unconditionally and every
    long-lived task ends the same way. `healthy`, when given, is asked before each ping; a
    False skips that ping (e.g. a loop that runs but cannot make progress), and enough
    skipped pings let systemd restart the service.
    """
    every = interval if interval is not None else watchdog_interval(environ)
    if every is None:
        await asyncio.Event().wait()
        return
    while True:
        if healthy is None or healthy():
            notify("WATCHDOG=1", environ=environ)
        await asyncio.sleep(every)
