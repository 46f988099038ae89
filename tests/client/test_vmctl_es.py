"""vmctl as es users expect it, as a real process over the real broker: es's --csv and
--tabulate output, the URL from a file instead of the command line, the progress line on a
terminal."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from .responder import VMCTL, VMS, Responder, run_vmctl, vmctl_env

UrlFor = Callable[[str], str]


async def test_csv_of_the_status_list(responder: Responder, amqp_url_for: UrlFor) -> None:
    done = await run_vmctl("get", "/vm/status", "--csv", url=amqp_url_for("alice"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\r\n")
    assert lines[0] == "hostname;uuid;alias;status;status_change;node_status;tasks"
    assert [line.split(";")[0] for line in lines[1:-1]] == [vm["hostname"] for vm in VMS]
    assert lines[-1] == ""  # every row ends with CRLF, as es writes them
    assert done.stderr == ""


async def test_tabulate_of_an_error_exits_1(responder: Responder, amqp_url_for: UrlFor) -> None:
    done = await run_vmctl("get", "/vm/missing/status", "--tabulate", url=amqp_url_for("alice"))
    assert done.returncode == 1
    assert done.stdout == "------  ------------\ndetail  VM not found\n------  ------------\n"


async def test_tabulate_format_of_a_finished_task(
    responder: Responder, amqp_url_for: UrlFor
) -> None:
    responder.task_seconds = 0.2
    done = await run_vmctl("set", "/vm/web01/status/stop", "--tabulate-psql",
                           url=amqp_url_for("alice"))
    assert done.returncode == 0, done.stderr
    rows = done.stdout.splitlines()
    assert rows[0].startswith("+-") and rows[-1].startswith("+-")
    assert re.fullmatch(r"\| returncode +\| 0 +\|", rows[1])
    assert done.stderr.startswith("Waiting for pending task ")


async def test_unknown_format_exits_13_before_sending(responder: Responder,
                                                      amqp_url_for: UrlFor) -> None:
    done = await run_vmctl("get", "/vm/status", "--tabulate-nope", url=amqp_url_for("alice"))
    assert done.returncode == 13
    assert done.stderr.startswith("vmctl: invalid output format '--tabulate-nope'")
    assert responder.seen == []


def _private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


async def test_url_from_a_file(responder: Responder, amqp_url_for: UrlFor,
                               tmp_path: Path) -> None:
    url_file = _private(tmp_path / "url", amqp_url_for("bob") + "\n")
    done = await run_vmctl("get", "/vm/status", url=None, env={"VMD_URL_FILE": str(url_file)})
    assert done.returncode == 0, done.stderr
    assert responder.seen[-1].user_id == "bob"
    url_file.chmod(0o644)
    done = await run_vmctl("get", "/vm/status", url=None, env={"VMD_URL_FILE": str(url_file)})
    assert done.returncode == 11
    assert done.stderr == (f"vmctl: permissions 0644 for {url_file} are too open: it holds a "
                           f"password, so only its owner may read it (chmod 600 {url_file}) "
                           "(vmctl --help)\n")
    assert len(responder.seen) == 1


async def test_url_from_the_config_file(responder: Responder, amqp_url_for: UrlFor,
                                        tmp_path: Path) -> None:
    config = _private(tmp_path / "vmctl" / "config.toml", f'url = "{amqp_url_for("alice")}"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    done = await run_vmctl("get", "/vm/status", url=None, env=env)
    assert done.returncode == 0, done.stderr
    assert responder.seen[-1].user_id == "alice"
    # A refused login names the file to check.
    _private(config, f'url = "{amqp_url_for("alice").replace("alice:alice@", "alice:no@")}"\n')
    done = await run_vmctl("get", "/vm/status", url=None, env=env)
    assert done.returncode == 3
    assert done.stderr == f"vmctl: the broker refused user alice: ACCESS_REFUSED (check {config})\n"


async def _run_on_a_terminal(*args: str, url: str) -> tuple[int, str]:
    """vmctl with its stderr on a pseudo-terminal; (exit code, what the terminal got)."""
    main, side = pty.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            str(VMCTL), *args, env=vmctl_env(url), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=side)
    finally:
        os.close(side)
    loop = asyncio.get_running_loop()
    screen = b""
    try:
        async with asyncio.timeout(60):
            while True:
                try:
                    chunk = await loop.run_in_executor(None, os.read, main, 4096)
                except OSError:  # EIO: vmctl closed the terminal (it exited)
                    break
                if not chunk:
                    break
                screen += chunk
            await proc.wait()
    finally:
        os.close(main)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, screen.decode()


async def test_a_slow_first_answer_shows_the_time_on_a_terminal(
    responder: Responder, amqp_url_for: UrlFor
) -> None:
    responder.answer_delay = 2.5
    code, screen = await _run_on_a_terminal("get", "/vm/status", "--csv",
                                            url=amqp_url_for("alice"))
    assert code == 0, screen
    # Redrawn every second from the first on (how many times depends on the machine's load).
    seconds = [int(n) for n in re.findall(r"\r\x1b\[KWaiting for vmd's answer \.\.\. (\d+)s",
                                          screen)]
    assert seconds and seconds == sorted(seconds) and seconds[0] >= 1, screen
    assert screen.endswith("\r\x1b[K")  # erased when the answer came


async def test_the_waiting_line_is_redrawn_on_a_terminal(
    responder: Responder, amqp_url_for: UrlFor
) -> None:
    responder.task_seconds = 2.5
    code, screen = await _run_on_a_terminal("set", "/vm/web01/status/start",
                                            url=amqp_url_for("alice"))
    assert code == 0, screen
    [task_id] = responder.tasks
    assert screen.startswith(f"Waiting for pending task {task_id} ")
    redraws = re.findall(rf"\r\x1b\[KWaiting for pending task {task_id} (\.+) (\d+\.\d)s",
                         screen)
    assert [len(dots) for dots, _ in redraws[:2]] == [1, 2]
    assert screen.endswith("s\r\n")  # the last redraw, kept, with the time waited
    # The task ends 2.5 s after the responder made it; the 201 took a moment to arrive.
    assert float(redraws[-1][1]) >= 2.0


@pytest.mark.parametrize("fmt", ["--json", "--csv", "--tabulate"])
async def test_no_wait_in_each_format(responder: Responder, amqp_url_for: UrlFor,
                                      fmt: str) -> None:
    responder.task_seconds = 30
    done = await run_vmctl("set", "/vm/web01/status/start", "--no-wait", fmt,
                           url=amqp_url_for("alice"))
    assert done.returncode == 0
    if fmt == "--json":
        assert json.loads(done.stdout)["text"]["status"] == "PENDING"
    else:
        assert done.stdout == "None\n"  # es prints a pending task's null result as is
