"""vmctl as a real process against the stand-in responder: output, waiting, exit codes."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
from collections.abc import Callable

import pytest
from support.proxy import TcpProxy

from .responder import VMCTL, VMS, Responder, run_vmctl, vmctl_env

UrlFor = Callable[[str], str]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_list_prints_es_json(responder: Responder, amqp_url_for: UrlFor) -> None:
    done = await run_vmctl("get", "/vm/status", "-order_by", "-hostname",
                           url=amqp_url_for("alice"))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert list(out) == ["method", "path", "status", "text"]
    assert out["method"] == "GET" and out["path"] == "/vm/status" and out["status"] == 200
    assert out["text"]["result"] == VMS
    assert "code" not in out["text"]
    [seen] = responder.seen
    assert seen.body == {"method": "GET", "path": "/vm/status",
                         "data": {"order_by": "-hostname"}}
    assert seen.user_id == "alice"
    assert seen.stream  # vmctl always asks for stream mode, as es sends ES-STREAM
    assert done.stderr == ""


async def test_table(responder: Responder, amqp_url_for: UrlFor) -> None:
    done = await run_vmctl("get", "/vm/status", "--table", url=amqp_url_for("admin"))
    assert done.returncode == 0, done.stderr
    header, _rule, *rows = done.stdout.splitlines()
    assert header.split() == ["hostname", "uuid", "alias", "status", "status_change",
                              "node_status", "tasks"]
    assert [r.split()[0] for r in rows] == [vm["hostname"] for vm in VMS]
    assert rows[0].split()[-1] == "1"


async def test_table_of_an_error_is_the_json(responder: Responder, amqp_url_for: UrlFor) -> None:
    done = await run_vmctl("get", "/vm/missing/status", "--table", url=amqp_url_for("alice"))
    assert done.returncode == 1
    assert json.loads(done.stdout)["text"] == {"detail": "VM not found"}


async def test_wait_prints_dots_and_the_final_reply(
    responder: Responder, amqp_url_for: UrlFor
) -> None:
    responder.task_seconds = 2.2
    done = await run_vmctl("set", "/vm/web01.example.com/status/stop", "-force",
                           "-timeout", "60", url=amqp_url_for("alice"))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == 200
    assert out["text"]["status"] == "SUCCESS"
    task_id = out["text"]["task_id"]
    # es's line, then the seconds waited.
    waited = re.fullmatch(rf"Waiting for pending task {re.escape(task_id)} \.+ (\d+\.\d)s\n",
                          done.stderr)
    assert waited, done.stderr
    assert 1.7 <= float(waited[1]) < 30  # the task's 2.2 s, less the 201's trip
    [seen] = responder.seen
    assert seen.body["data"] == {"force": True, "timeout": "60"}
    assert seen.stream


async def test_wait_for_a_failed_task_exits_1(responder: Responder, amqp_url_for: UrlFor) -> None:
    responder.task_seconds = 0.3
    done = await run_vmctl("set", "/vm/broken/status/start", url=amqp_url_for("alice"))
    assert done.returncode == 1
    out = json.loads(done.stdout)
    assert out["status"] == 400 and out["text"]["status"] == "FAILURE"
    assert done.stderr.startswith("Waiting for pending task ")


async def test_no_wait_returns_the_201(responder: Responder, amqp_url_for: UrlFor) -> None:
    responder.task_seconds = 30.0
    done = await run_vmctl("set", "/vm/web01/status/start", "--no-wait",
                           url=amqp_url_for("alice"))
    assert done.returncode == 0
    out = json.loads(done.stdout)
    assert out["status"] == 201
    assert out["text"]["status"] == "PENDING"
    assert out["text"]["task_id"] in responder.tasks
    assert done.stderr == ""
    [seen] = responder.seen
    assert not seen.stream


async def test_task_status_and_message_id(responder: Responder, amqp_url_for: UrlFor) -> None:
    url = amqp_url_for("alice")
    first = await run_vmctl("set", "/vm/web01/status/reboot", "--no-wait",
                            "--message-id", "reboot-web01-7", url=url)
    again = await run_vmctl("set", "/vm/web01/status/reboot", "--no-wait",
                            "--message-id", "reboot-web01-7", url=url)
    assert json.loads(again.stdout) == json.loads(first.stdout)  # same task_id
    assert responder.executed == 1
    task_id = json.loads(first.stdout)["text"]["task_id"]
    done = await run_vmctl("get", f"/task/{task_id}/status", url=url)
    assert done.returncode == 0
    assert json.loads(done.stdout)["text"]["task_id"] == task_id


async def test_define_with_a_json_object(responder: Responder, amqp_url_for: UrlFor) -> None:
    done = await run_vmctl("set", "/vm/web01/define", 'json::{"ram": 2048}', "-alias", "w1",
                           url=amqp_url_for("admin"))
    assert done.returncode == 0, done.stderr
    [seen] = responder.seen
    assert seen.body == {"method": "PUT", "path": "/vm/web01/define",
                         "data": {"ram": 2048, "alias": "w1"}}


@pytest.mark.parametrize(
    ("args", "code", "status"),
    [
        pytest.param(("get", "/vm/status"), 0, 200, id="200-exit-0"),
        pytest.param(("get", "/vm/missing/status"), 1, 404, id="404-exit-1"),
        pytest.param(("get", "/nowhere"), 1, 404, id="unknown-path-exit-1"),
        pytest.param(("post", "/vm/status"), 1, 405, id="post-405-exit-1"),
        pytest.param(("delete", "/vm/web01/status"), 1, 405, id="delete-405-exit-1"),
        pytest.param(("get", "/boom"), 2, 503, id="503-exit-2"),
    ],
)
async def test_exit_codes_follow_the_status(
    responder: Responder, amqp_url_for: UrlFor, args: tuple[str, ...], code: int, status: int
) -> None:
    done = await run_vmctl(*args, url=amqp_url_for("alice"))
    assert done.returncode == code, done.stderr
    assert json.loads(done.stdout)["status"] == status
    assert responder.seen[0].body["method"] == {"get": "GET", "post": "POST",
                                                 "delete": "DELETE"}[args[0]]


def _one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


async def test_unreachable_broker_exits_3() -> None:
    port = _closed_port()
    done = await run_vmctl("get", "/vm/status", url=f"amqp://alice:alice@127.0.0.1:{port}/vmd")
    assert done.returncode == 3
    assert _one_line(done.stderr) == (
        f"vmctl: cannot reach the broker at 127.0.0.1:{port}: connection refused (check VMD_URL)")
    assert done.stdout == ""


async def test_refused_login_is_one_line_exit_3(amqp_url_for: UrlFor) -> None:
    url = amqp_url_for("alice").replace("alice:alice@", "alice:wrong@")
    done = await run_vmctl("get", "/vm/status", url=url)
    assert done.returncode == 3
    # Not aiormq's "Expected one of ['Connection.OpenOk'], got <Connection.Close ...>", and
    # not the password.
    assert _one_line(done.stderr) == (
        "vmctl: the broker refused user alice: ACCESS_REFUSED (check VMD_URL)")
    done = await run_vmctl("-u", url, "events", url=None)
    assert done.returncode == 3
    assert _one_line(done.stderr) == (
        "vmctl: the broker refused user alice: ACCESS_REFUSED (check -u)")


async def test_unknown_vhost_is_one_line_exit_3(amqp_url_for: UrlFor) -> None:
    url = amqp_url_for("alice").rsplit("/", 1)[0] + "/vmd-no-such-vhost"
    done = await run_vmctl("get", "/vm/status", url=url)
    assert done.returncode == 3
    assert _one_line(done.stderr) == (
        "vmctl: the broker refused user alice on vhost 'vmd-no-such-vhost': NOT_ALLOWED, the "
        "vhost does not exist or the user has no permissions on it (check VMD_URL)")


async def test_a_broker_that_does_not_answer_is_one_line_exit_3() -> None:
    # A port that accepts connections and never speaks AMQP (a black-holed broker).
    accepted: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda _r, w: accepted.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        done = await run_vmctl("get", "/vm/status", "--timeout", "1",
                               url=f"amqp://alice:alice@127.0.0.1:{port}/vmd")
        for writer in accepted:
            writer.close()
    assert len(accepted) == 2  # vmctl tried twice
    assert done.returncode == 3
    assert _one_line(done.stderr) == (
        f"vmctl: cannot reach the broker at 127.0.0.1:{port}: no answer within 1s "
        "(check VMD_URL)")


async def test_vmd_not_running_exits_3(amqp_url_for: UrlFor) -> None:
    done = await run_vmctl("get", "/vm/status", url=amqp_url_for("alice"))
    assert done.returncode == 3
    assert _one_line(done.stderr).startswith("vmctl: ")


async def test_no_answer_in_time_exits_3(
    responder: Responder, amqp_url_for: UrlFor
) -> None:
    responder.lose_replies = 1
    done = await run_vmctl("get", "/vm/status", "--timeout", "0.5", url=amqp_url_for("alice"))
    assert done.returncode == 3
    assert "no reply from vmd within 0.5s" in _one_line(done.stderr)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((), id="nothing"),
        pytest.param(("frob", "/vm/status"), id="unknown-action"),
        pytest.param(("get",), id="no-path"),
        pytest.param(("get", "/vm/status", "stray"), id="stray-value"),
        pytest.param(("get", "/vm/status", "-x", "json::{"), id="bad-json"),
        pytest.param(("get", "/vm/status", "--frob"), id="unknown-option"),
        pytest.param(("-u", "http://example.com/", "get", "/vm/status"), id="not-an-amqp-url"),
    ],
)
async def test_usage_errors_exit_11(args: tuple[str, ...]) -> None:
    done = await run_vmctl(*args, url=None)
    assert done.returncode == 11
    assert _one_line(done.stderr).endswith("(vmctl --help)")
    assert done.stdout == ""


async def test_help_exits_0() -> None:
    done = await run_vmctl("--help", url=None)
    assert done.returncode == 0
    assert done.stdout.startswith("usage: vmctl")


async def test_url_from_env_and_dash_u(responder: Responder, amqp_url_for: UrlFor) -> None:
    bad = f"amqp://alice:alice@127.0.0.1:{_closed_port()}/vmd"
    # -u wins over VMD_URL.
    done = await run_vmctl("-u", amqp_url_for("bob"), "get", "/vm/status", url=bad)
    assert done.returncode == 0, done.stderr
    assert responder.seen[-1].user_id == "bob"


async def test_ctrl_c_while_waiting_exits_5_and_the_task_goes_on(
    responder: Responder, amqp_url_for: UrlFor
) -> None:
    responder.task_seconds = 60.0
    proc = await asyncio.create_subprocess_exec(
        str(VMCTL), "set", "/vm/web01/status/start", env=vmctl_env(amqp_url_for("alice")),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        seen = b""
        async with asyncio.timeout(30):
            while b"Waiting for pending task" not in seen:
                chunk = await proc.stderr.read(256)
                assert chunk, "vmctl ended before waiting"
                seen += chunk
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 5
    [task_id] = responder.tasks
    pending = json.loads(out)
    assert pending["status"] == 201 and pending["text"]["task_id"] == task_id
    stderr = (seen + err).decode()
    assert f"interrupted; task {task_id} goes on" in stderr
    assert "Traceback" not in stderr


async def test_lost_reply_is_asked_again_by_vmctl(
    amqp_proxy: TcpProxy, responder: Responder, amqp_vhost: str
) -> None:
    responder.lose_replies = 1

    async def cut() -> None:
        await responder.lost.get()
        amqp_proxy.cut()

    cutter = asyncio.create_task(cut())
    done = await run_vmctl("set", "/vm/web01/status/stop", "--no-wait",
                           url=amqp_proxy.url("alice", "alice", amqp_vhost))
    await cutter
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == 201
    first, repeat = responder.seen
    assert repeat.repeat and repeat.message_id == first.message_id
    assert responder.executed == 1
    assert amqp_proxy.accepted == 2  # it reconnected once
