"""`scripts/demo.py` as a user runs it: the daemon, three simulated nodes and the HTTP
gateway come up, the printed vmctl and curl examples work as printed, Ctrl-C stops
everything with exit 0 and leaves no process behind.

It runs on the test vhost, the gateway and the metrics on ports of their own choosing
(`--vhost`, `--api-listen 127.0.0.1:0`, `--metrics-port 0`), so it cannot disturb a demo or
another test run.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import pytest

from .responder import vmctl_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


async def _shell(command: str) -> tuple[int, str, str]:
    """One printed example line, run by bash as the user would paste it."""
    env = vmctl_env(None)
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    proc = await asyncio.create_subprocess_exec(
        "bash", "--norc", "--noprofile", "-c", command, env=env, cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _example(banner: str, start: str) -> str:
    """The printed line starting with `start` (its trailing comment removed)."""
    line = next(line.strip() for line in banner.splitlines() if line.strip().startswith(start))
    return line.split("  #")[0].strip()


def _pids_under(base: Path) -> list[int]:
    """Processes whose command line names the demo's state directory (its daemon, agents,
    gateway and simulators)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(base).encode() in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(shutil.which("curl") is None, reason="the printed examples use curl")
async def test_demo_with_the_gateway(amqp_clean: str, tmp_path: Path) -> None:
    base = tmp_path / "demo"
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "python"), str(ROOT / "scripts" / "demo.py"), "--dir", str(base),
        "--vhost", amqp_clean, "--api-listen", "127.0.0.1:0", "--metrics-port", "0",
        "--vms-per-node", "4", env=env, cwd=ROOT, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        banner = ""
        async with asyncio.timeout(150):
            while "Ctrl-C stops everything." not in banner:
                line = await proc.stdout.readline()
                assert line, (await proc.stderr.read()).decode()
                banner += line.decode()
        assert re.search(r"3 compute nodes, 12 VMs, the HTTP gateway at\s+http://127\.0\.0\.1:\d+/api/",
                         banner), banner

        # vmctl as printed (VMD_URL from the banner's export line).
        admin_url = re.search(r"export VMD_URL=(\S+)", banner)
        assert admin_url is not None and admin_url[1].endswith(f"/{amqp_clean}")
        code, out, err = await _shell(f"VMD_URL={admin_url[1]} vmctl get /vm/status --csv")
        assert code == 0, err
        assert len(out.split("\r\n")) == 1 + 12 + 1  # header, 12 VMs, the last CRLF

        # curl as printed, with the banner's keys.
        keys = _example(banner, "export ADMIN_KEY=")
        listed = _example(banner, 'curl -s -H "ES-API-KEY: $ADMIN_KEY"')
        code, out, err = await _shell(f"{keys}; {listed}")
        assert code == 0, err
        body = json.loads(out)
        assert body["status"] == "SUCCESS" and len(body["result"]) == 12
        mine = _example(banner, 'curl -s -H "ES-API-KEY: $ALICE_KEY"')
        code, out, err = await _shell(f"{keys}; {mine}")
        assert code == 0, err
        assert len(json.loads(out)["result"]) == 6  # alice owns every other VM
        start = banner.index('curl -s -X PUT')
        stop = " ".join(part.strip().rstrip("\\").split("  #")[0]
                        for part in banner[start:].splitlines()[:2])
        code, out, err = await _shell(f"{keys}; {stop}")
        assert code == 0, err
        final_code, final = out.strip().split("\n", 1)  # ES-STREAM es: "<code>\n<task>"
        assert final_code == "200", out
        assert json.loads(final)["status"] == "SUCCESS"
        assert "es set /vm/" in banner and "export ES_API_KEY=$ADMIN_KEY" in banner

        # Ctrl-C: everything stops, exit 0.
        assert _pids_under(base)
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(90):
            _out, err_bytes = await proc.communicate()
        assert proc.returncode == 0, err_bytes.decode()
        assert "demo: stopping (SIGTERM to every process" in err_bytes.decode()
        assert _pids_under(base) == []
        assert '"event":"stopped"' in (base / "api.log").read_text()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for pid in _pids_under(base):
            os.kill(pid, signal.SIGKILL)
