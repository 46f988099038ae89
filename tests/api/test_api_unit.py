"""systemd/vmd-api.service: the settings the gateway's start and stop depend on, in the
style of the other units, and what `systemd-analyze` says of it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.mdwe import run_under_mdwe

from vmd import config

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "vmd-api.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not installed (Debian package: systemd)")
INSTALLED_VMD = "/usr/local/bin/vmd"


def directives(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def one(key: str) -> str:
    [value] = directives(UNIT)[key]
    return value


def test_unit_settings() -> None:
    assert one("ExecStart") == f"{INSTALLED_VMD} api -c /etc/vmd/api.toml"
    expected = {
        "Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30",
        "Restart": "on-failure", "RestartPreventExitStatus": "2", "KillMode": "mixed",
        "KillSignal": "SIGTERM", "User": "vmd", "Group": "vmd",
        "ConfigurationDirectory": "vmd", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
        "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
        "MemoryDenyWriteExecute": "yes", "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "After": "network-online.target rabbitmq-server.service",
        "Wants": "network-online.target",
    }
    for key, value in expected.items():
        assert one(key) == value, key
    assert "@system-service" in directives(UNIT)["SystemCallFilter"]
    assert "StateDirectory" not in directives(UNIT)  # the gateway writes nothing


def test_stop_timeout_outlasts_the_drain() -> None:
    stop = int(one("TimeoutStopSec"))
    assert stop >= config.ApiSettings(broker_url="amqp://x").drain_timeout + 15


@needs_analyze
@pytest.mark.parametrize("command", [
    pytest.param(["verify"], id="verify"),
    pytest.param(["security", "--offline=yes", "--threshold=20"], id="security"),
])
def test_systemd_analyze(tmp_path: Path, command: list[str]) -> None:
    # `verify` checks that ExecStart's binary exists: point it at this venv's vmd.
    vmd = Path(sys.executable).parent / "vmd"
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(INSTALLED_VMD, str(vmd)))
    assert ANALYZE is not None
    done = subprocess.run([ANALYZE, *command, str(copy)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert [line for line in done.stderr.splitlines() if copy.name in line] == []


# MemoryDenyWriteExecute=yes: the kernel's equivalent for any process is prctl PR_SET_MDWE
# (Linux >= 6.3). Under it, import the gateway's stack and serve and fetch one request.
MDWE_CHILD = """
import asyncio
import aiohttp
from aiohttp import web
import vmd.api, vmd.cli.api_cmd
from vmd.api.translate import render

async def main():
    app = web.Application()
    app.router.add_get("/", lambda request: web.Response(
        body=render({"ok": True}), content_type="application/json"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/") as response:
            assert await response.json() == {"ok": True}
    await runner.cleanup()
    vmd.api.ApiMetrics()

asyncio.run(main())
print("ok")
"""


def test_the_gateway_runs_under_memory_deny_write_execute() -> None:
    done = run_under_mdwe(MDWE_CHILD)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "ok"
