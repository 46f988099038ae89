"""A clean boot: under systemd the processes wait for a broker that comes up late.

Real processes, a real datagram socket as `$NOTIFY_SOCKET`, and a broker address that
refuses connections until the test opens it: a `TcpProxy` to the real RabbitMQ, started
on that port later. The daemon reports each failed attempt (`STATUS=waiting for the broker
(attempt N, ...)` with `EXTEND_TIMEOUT_USEC`, so systemd's start timeout does not end the
wait), logs it once (no aiormq duplicate), and becomes ready when the broker answers. The
agent and the gateway report the same way. Run by hand (no `$NOTIFY_SOCKET`) or with an
explicit `connect_attempts`, the attempts are bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from support.amqp import auth_agents_toml
from support.proxy import TcpProxy

from vmd.api.service import bus_settings_for
from vmd.bus import BusSettings, boot_attempts
from vmd.config import ApiSettings
from vmd.obs.systemd import START_MARGIN, Notifier

VMD = str(Path(sys.executable).parent / "vmd")
pytestmark = pytest.mark.slow


class Notify:
    """A bound AF_UNIX datagram socket standing in for systemd's."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    async def wait_for(self, predicate: str | None = None, *, count: int = 1,
                       prefix: str = "", timeout: float = 60.0,
                       proc: asyncio.subprocess.Process | None = None) -> list[str]:
        async with asyncio.timeout(timeout):
            while True:
                found = [m for m in self.drain() if m.startswith(prefix)
                         and (predicate is None or predicate in m)]
                if len(found) >= count:
                    return found
                assert proc is None or proc.returncode is None, "the process exited"
                await asyncio.sleep(0.05)


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[Notify]:
    n = Notify(tmp_path / "notify")
    yield n
    n.sock.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_with(notify: Notify | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")}
    if notify is not None:
        env["NOTIFY_SOCKET"] = notify.path
    return env


def daemon_config(tmp_path: Path, url: str, broker_extra: str = "") -> Path:
    path = tmp_path / "vmd.toml"
    path.write_text(f"""\
[broker]
url = "{url}"
{broker_extra}
[daemon]
store = "{tmp_path / 'vmd.sqlite3'}"
metrics = "127.0.0.1:0"
drain_timeout = 2

[auth]
admins = ["admin"]
{auth_agents_toml()}
[log]
level = "info"
format = "json"
""")
    return path


@pytest.fixture
async def late_broker() -> AsyncIterator[tuple[TcpProxy, int]]:
    proxy = TcpProxy()
    port = closed_port()
    yield proxy, port
    await proxy.close()


async def spawn(args: list[str], notify: Notify | None, log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            *args, env=env_with(notify), stdin=subprocess.DEVNULL, stdout=out,
            stderr=asyncio.subprocess.PIPE)


async def stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode


def attempt_of(message: str) -> int:
    return int(message.split("(attempt ", 1)[1].split(",", 1)[0])


async def test_the_daemon_waits_for_a_late_broker_and_becomes_ready(
    tmp_path: Path, notify: Notify, late_broker: tuple[TcpProxy, int], amqp_vhost: str,
    amqp_url: str,
) -> None:
    proxy, port = late_broker
    config = daemon_config(tmp_path, f"amqp://vmd:vmd@127.0.0.1:{port}/{amqp_vhost}")
    log = tmp_path / "daemon.log"
    proc = await spawn([VMD, "daemon", "-c", str(config)], notify, log)
    try:
        # Past the 5 attempts a run by hand gets (about 5 s): still waiting, not exited.
        waiting = await notify.wait_for(prefix="STATUS=waiting for the broker", count=6,
                                        proc=proc)
        assert [attempt_of(m) for m in waiting] == list(range(1, len(waiting) + 1))
        for message in waiting:
            status, extend = message.split("\n")
            assert status.startswith("STATUS=waiting for the broker (attempt ")
            assert "last error: " in status and "Connect call failed" in status, status
            assert int(extend.removeprefix("EXTEND_TIMEOUT_USEC=")) >= 90_000_000
        assert not [m for m in notify.messages if m.startswith("READY=1")]
        await proxy.start(port)
        ready = await notify.wait_for(prefix="READY=1", proc=proc)
        assert ready[0].endswith("STATUS=0 VMs, 0 nodes online")
        assert proxy.accepted >= 1
    finally:
        code = await stop(proc)
    assert code == 0
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    failures = [e for e in entries if e.get("event") == "broker connect failed; retrying"]
    # One line per failed attempt, vmd's (aiormq's duplicate is demoted to debug).
    assert len(failures) >= len(waiting), failures
    assert all(e["logger"] == "vmd.bus.link" and e["level"] == "warning" for e in failures)
    assert [e["attempt"] for e in failures] == list(range(1, len(failures) + 1))
    assert all(e["url"] == f"amqp://vmd:***@127.0.0.1:{port}/{amqp_vhost}" for e in failures)
    assert not [e for e in entries if "creating transport" in str(e.get("event"))]


async def test_run_by_hand_the_daemon_gives_up_after_5_attempts(tmp_path: Path) -> None:
    config = daemon_config(tmp_path, f"amqp://vmd:vmd@127.0.0.1:{closed_port()}/x")
    proc = await spawn([VMD, "daemon", "-c", str(config)], None, tmp_path / "log")
    assert await asyncio.wait_for(proc.wait(), 60) == 1
    assert proc.stderr is not None
    [line] = (await proc.stderr.read()).decode().splitlines()
    assert "after 5 attempts" in line, line


async def test_an_explicit_connect_attempts_bounds_the_wait_under_systemd(
        tmp_path: Path, notify: Notify) -> None:
    config = daemon_config(tmp_path, f"amqp://vmd:vmd@127.0.0.1:{closed_port()}/x",
                           "connect_attempts = 2")
    proc = await spawn([VMD, "daemon", "-c", str(config)], notify, tmp_path / "log")
    assert await asyncio.wait_for(proc.wait(), 60) == 1
    assert proc.stderr is not None
    assert "after 2 attempts" in (await proc.stderr.read()).decode()
    assert len(await notify.wait_for("waiting for the broker", timeout=5)) == 1


def role_configs(tmp_path: Path, port: int) -> dict[str, Path]:
    agent = tmp_path / "agent.toml"
    agent.write_text(f"""\
[broker]
url = "amqp://vmd-agent-node1:vmd-agent-node1@127.0.0.1:{port}/x"
[agent]
node = "node1"
backend = "memory"
metrics = "127.0.0.1:0"
state_dir = "{tmp_path / 'state'}"
[log]
format = "json"
""")
    api = tmp_path / "api.toml"
    api.write_text(f"""\
[api]
broker_url = "amqp://vmd-api:vmd-api@127.0.0.1:{port}/x"
listen = "127.0.0.1:0"
metrics = "127.0.0.1:0"
[log]
format = "json"
""")
    return {"agent": agent, "api": api}


async def test_the_agent_and_the_gateway_report_their_wait(tmp_path: Path, notify: Notify) -> None:
    for role, config in role_configs(tmp_path, closed_port()).items():
        proc = await spawn([VMD, role, "-c", str(config)], notify, tmp_path / f"{role}.log")
        try:
            found = await notify.wait_for(prefix="STATUS=waiting for the broker", count=2,
                                          proc=proc)
            assert [attempt_of(m) for m in found[:2]] == [1, 2], (role, found)
        finally:
            await stop(proc)
        notify.drain()
        notify.messages.clear()


@pytest.mark.parametrize("role", ["daemon", "agent", "api"])
async def test_sigterm_ends_the_wait_for_the_broker_at_once(
        tmp_path: Path, notify: Notify, role: str) -> None:
    port = closed_port()
    configs = {"daemon": daemon_config(tmp_path, f"amqp://vmd:vmd@127.0.0.1:{port}/x"),
               **role_configs(tmp_path, port)}
    proc = await spawn([VMD, role, "-c", str(configs[role])], notify, tmp_path / "log")
    await notify.wait_for("waiting for the broker", count=2, proc=proc)
    proc.send_signal(signal.SIGTERM)
    # Not after the next attempt, nor after systemd's TimeoutStopSec: now.
    assert await asyncio.wait_for(proc.wait(), 10) == 0


@pytest.mark.parametrize(("configured", "environ", "expected"), [
    pytest.param(None, {}, 5, id="unset-by-hand"),
    pytest.param(None, {"NOTIFY_SOCKET": "/run/systemd/notify"}, None, id="unset-systemd"),
    pytest.param(0, {}, None, id="zero-forever"),
    pytest.param(3, {"NOTIFY_SOCKET": "/run/systemd/notify"}, 3, id="explicit"),
])
def test_boot_attempts(configured: int | None, environ: dict[str, str],
                       expected: int | None) -> None:
    assert boot_attempts(configured, environ) == expected


def test_the_gateway_takes_its_attempts_from_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    settings = ApiSettings(broker_url="amqp://u:p@127.0.0.1/v", connect_attempts=7)
    assert bus_settings_for(settings, Notifier()).connect_attempts == 7
    unset = ApiSettings(broker_url="amqp://u:p@127.0.0.1/v")
    assert bus_settings_for(unset, Notifier()).connect_attempts == 5
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify")
    assert bus_settings_for(unset, Notifier()).connect_attempts is None


def test_the_units_agree_with_the_wait() -> None:
    """Under the units the wait is unbounded by default and reported to systemd (Type=notify,
    NotifyAccess=main); each report moves the start timeout past the next attempt; a crash
    loop (RestartSec x StartLimitBurst) still trips the start limit within its interval."""
    units = sorted((Path(__file__).resolve().parents[2] / "systemd").glob("*.service"))
    assert len(units) == 4
    defaults = BusSettings("amqp://u:p@127.0.0.1/v")
    assert defaults.connect_timeout + defaults.retry_delay_max * 1.2 < START_MARGIN
    for unit in units:
        keys = dict(line.split("=", 1) for line in unit.read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
        assert keys["Type"] == "notify" and keys["NotifyAccess"] == "main", unit.name
        burst, interval = int(keys["StartLimitBurst"]), int(keys["StartLimitIntervalSec"])
        assert int(keys["RestartSec"]) * burst < interval, unit.name
        assert "connect_attempts" in unit.read_text(), unit.name  # the comment says how
