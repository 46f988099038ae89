"""`vmd api -c FILE` as a real process: READY after the broker is up, requests, /metrics,
SIGTERM to exit 0 with STOPPING=1; and the one-line refusals at start (exit 2 for what a
restart cannot fix, 1 for a broker that cannot be reached)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from .helpers import ADMIN_KEY, admin
from .responder import Responder

VMD = str(Path(sys.executable).parent / "vmd")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, broker_url: str, *, port: int, metrics: int,
                 keys: str = f'"{ADMIN_KEY}" = "admin"\n') -> Path:
    path.write_text(
        f'[api]\nlisten = "127.0.0.1:{port}"\nprefix = "/api"\nbroker_url = "{broker_url}"\n'
        f'metrics = "127.0.0.1:{metrics}"\ntimeout = 5\ndrain_timeout = 2\n'
        f"[api.keys]\n{keys}[log]\nformat = \"json\"\n")
    return path


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    # A short path: sun_path holds 108 bytes, pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="vmd-") as tmp:
        path = str(Path(tmp) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.setblocking(False)
        try:
            yield sock, path
        finally:
            sock.close()


async def receive(sock: socket.socket, timeout: float = 30.0) -> str:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        try:
            return sock.recv(4096).decode()
        except BlockingIOError:
            assert loop.time() < end, "no notification from vmd api"
            await asyncio.sleep(0.02)


async def test_serves_until_sigterm(
        responder: Responder, amqp_url_for: Callable[[str], str], tmp_path: Path,
        notify_socket: tuple[socket.socket, str]) -> None:
    sock, address = notify_socket
    port, metrics = free_port(), free_port()
    config = write_config(tmp_path / "api.toml", amqp_url_for("vmd-api"), port=port,
                          metrics=metrics)
    process = await asyncio.create_subprocess_exec(
        VMD, "api", "-c", str(config), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "NOTIFY_SOCKET": address})
    try:
        ready = await receive(sock)
        assert ready == f"READY=1\nSTATUS=serving http://127.0.0.1:{port}/api/"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/api/vm/status/",
                                headers=admin()) as response:
                assert response.status == 200
                assert (await response.json())["status"] == "SUCCESS"
            async with http.get(f"http://127.0.0.1:{metrics}/metrics") as response:
                text = await response.text()
        assert 'vmd_api_requests_total{code="200",kind="list"} 1.0' in text
        assert 'vmd_build_info{process="api"' in text
        assert [s.user_id for s in responder.seen] == ["admin"]
        process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    assert (await receive(sock)).startswith("STOPPING=1\nSTATUS=draining")
    events = [json.loads(line)["event"] for line in stdout.decode().splitlines()]
    assert events[0] == "serving"
    assert "request" in events
    assert events[-1] == "stopped"
    assert stderr == b""


@pytest.mark.parametrize(
    ("text", "needle", "code"),
    [
        pytest.param("[api]\n", "[api] broker_url: missing (required)", 2, id="no-broker-url"),
        pytest.param('[api]\nbroker_url = "amqp://x"\n[api.keys]\n"short" = "admin"\n',
                     "[api.keys] shor...: an API key must be at least 16", 2, id="short-key"),
        pytest.param('[broker]\nurl = "amqp://x"\n', "[api] missing (required)", 2,
                     id="no-api-section"),
        pytest.param(None, "no such file", 2, id="no-file"),
    ],
)
def test_configuration_errors_are_one_line(tmp_path: Path, text: str | None, needle: str,
                                           code: int) -> None:
    path = tmp_path / "api.toml"
    if text is not None:
        path.write_text(text)
    done = subprocess.run([VMD, "api", "-c", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == code
    [line] = done.stderr.splitlines()
    assert line.startswith("vmd api: ") and needle in line
    assert done.stdout == ""


async def test_no_impersonator_tag_refuses_to_start(
        responder: Responder, amqp_url_for: Callable[[str], str], tmp_path: Path) -> None:
    config = write_config(tmp_path / "api.toml", amqp_url_for("vmd"), port=free_port(),
                          metrics=free_port())
    process = await asyncio.create_subprocess_exec(
        VMD, "api", "-c", str(config), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    [line] = stderr.decode().splitlines()
    assert line == (
        "vmd api: the broker refuses to let user 'vmd' publish on behalf of 'admin': give the "
        "gateway's own broker user (and no other) the impersonator tag: rabbitmqctl "
        "set_user_tags vmd impersonator (docs/api.md)")


async def test_address_in_use_is_a_configuration_error(
        responder: Responder, amqp_url_for: Callable[[str], str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        config = write_config(tmp_path / "api.toml", amqp_url_for("vmd-api"), port=port,
                              metrics=free_port())
        process = await asyncio.create_subprocess_exec(
            VMD, "api", "-c", str(config), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    [line] = stderr.decode().splitlines()
    assert line.startswith(f"vmd api: cannot listen on 127.0.0.1:{port}: ")


def test_broker_unreachable_at_start_exits_1(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = int(closed.getsockname()[1])
    config = write_config(tmp_path / "api.toml", f"amqp://vmd-api:vmd-api@127.0.0.1:{port}/x",
                          port=free_port(), metrics=free_port())
    done = subprocess.run([VMD, "api", "-c", str(config)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1  # systemd restarts it: the broker may come back
    [line] = done.stderr.splitlines()
    assert line.startswith("vmd api: ") and "amqp://vmd-api:***@127.0.0.1" in line
    assert "Traceback" not in done.stdout


def test_a_refused_broker_login_is_a_configuration_error(
        amqp_url_for: Callable[[str], str], tmp_path: Path) -> None:
    url = amqp_url_for("vmd-api").replace("vmd-api:vmd-api@", "vmd-api:wrong@")
    config = write_config(tmp_path / "api.toml", url, port=free_port(), metrics=free_port())
    done = subprocess.run([VMD, "api", "-c", str(config)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2  # restarting cannot fix a password
    [line] = done.stderr.splitlines()
    assert line.startswith("vmd api: the broker refused amqp://vmd-api:***@127.0.0.1")
    assert "wrong" not in line
