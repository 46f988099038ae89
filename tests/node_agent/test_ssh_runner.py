"""The SSH runner against a real asyncssh server on 127.0.0.1 (no simulator needed)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest

from vmd.node_agent.driver import HostKeyRejected, NodeUnreachable, SshConfigError, SshRunner

from .conftest import SshNode, alive, wait_for

PY = sys.executable
HANG = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[SshNode]:
    node = SshNode(tmp_path, {}, frozenset({PY}))
    await node.start()
    yield node
    await node.stop()


async def test_run_collects_rc_stdout_stderr(node: SshNode) -> None:
    runner = SshRunner(node.settings())
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    try:
        result = await runner.run([PY, "-c", code], timeout=10)
    finally:
        await runner.aclose()
    assert (result.returncode, result.stdout, result.stderr, result.timed_out) == (
        3, "out\n", "err\n", False)


async def test_arguments_arrive_verbatim(node: SshNode) -> None:
    hostile = ["; rm -rf /", "$(id)", "`id`", "a b", "'\"", "x\ny", "*"]
    code = "import json, sys; print(json.dumps(sys.argv[1:]))"
    runner = SshRunner(node.settings())
    try:
        result = await runner.run([PY, "-c", code, *hostile], timeout=10)
    finally:
        await runner.aclose()
    assert json.loads(result.stdout) == hostile


async def test_stdin_eof_without_input_and_fed_with_input(node: SshNode) -> None:
    code = "import sys; print(repr(sys.stdin.read()))"
    runner = SshRunner(node.settings())
    try:
        assert (await runner.run([PY, "-c", code], timeout=10)).stdout == "''\n"
        fed = await runner.run([PY, "-c", code], stdin=b'{"ram": 1}', timeout=10)
    finally:
        await runner.aclose()
    assert fed.stdout == "'{\"ram\": 1}'\n"


async def test_timeout_kills_the_remote_process_by_signal(node: SshNode) -> None:
    # Like OpenSSH, this server does NOT kill on channel close: only the `signal` request
    # the runner sends can end the command.
    node.kill_on_close = False
    runner = SshRunner(node.settings(), kill_wait=5)
    try:
        result = await runner.run([PY, "-c", HANG], timeout=1.0)
    finally:
        await runner.aclose()
    assert result.timed_out
    [pid] = node.pids
    await wait_for(lambda: not alive(pid), timeout=5)
    assert node.signals == ["KILL"]


async def test_cancellation_kills_the_remote_process(node: SshNode) -> None:
    node.kill_on_close = False
    runner = SshRunner(node.settings())
    task = asyncio.ensure_future(runner.run([PY, "-c", HANG], timeout=60))
    await wait_for(lambda: bool(node.pids) and alive(node.pids[0]))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for(lambda: not alive(node.pids[0]), timeout=5)
    await runner.aclose()


@pytest.mark.parametrize("case", ["changed-key", "unknown-host"])
async def test_wrong_host_key_is_a_hard_error(node: SshNode, case: str) -> None:
    if case == "changed-key":
        settings = node.settings(known_hosts_key=asyncssh.generate_private_key("ssh-ed25519"))
    else:
        settings = node.settings()
        settings.known_hosts.write_text("")
    runner = SshRunner(settings)
    for _ in range(2):  # never accepted, not even on a second try
        with pytest.raises(HostKeyRejected, match="host key not accepted"):
            await runner.run([PY, "-c", "print(1)"], timeout=5)
    assert node.pids == []
    await runner.aclose()


async def test_missing_known_hosts_or_keys_are_config_errors(node: SshNode) -> None:
    settings = node.settings()
    settings.known_hosts.unlink()
    with pytest.raises(SshConfigError, match=r"known_hosts file .* not found"):
        await SshRunner(settings).run([PY, "-c", "1"], timeout=5)
    with pytest.raises(SshConfigError, match="no client_keys"):
        SshRunner(node.settings().__class__(host="h", known_hosts=settings.known_hosts))


async def test_connection_loss_reconnects_on_next_command(node: SshNode) -> None:
    runner = SshRunner(node.settings())
    try:
        assert (await runner.run([PY, "-c", "print(1)"], timeout=10)).stdout == "1\n"
        node.drop_connections()
        # The next command reconnects (whether or not the loss was noticed yet).
        assert (await runner.run([PY, "-c", "print(2)"], timeout=10)).stdout == "2\n"
        assert (runner.connects, runner.reconnects) == (2, 1)
    finally:
        await runner.aclose()


async def test_server_down_then_back_on_the_same_port(node: SshNode) -> None:
    now = [0.0]
    runner = SshRunner(node.settings(), clock=lambda: now[0], backoff_initial=2.0)
    try:
        assert (await runner.run([PY, "-c", "print(1)"], timeout=10)).returncode == 0
        await node.stop()
        with pytest.raises(NodeUnreachable):
            await runner.run([PY, "-c", "print(2)"], timeout=5)
        await node.start()  # same port
        # Within the back-off the runner fails fast without trying.
        with pytest.raises(NodeUnreachable, match="next attempt in"):
            await runner.run([PY, "-c", "print(3)"], timeout=5)
        now[0] += 2.5
        assert (await runner.run([PY, "-c", "print(4)"], timeout=10)).stdout == "4\n"
        assert runner.reconnects == 1
        assert runner.connect_failures >= 1
    finally:
        await runner.aclose()


async def test_connection_lost_mid_command_is_unknown_outcome(node: SshNode) -> None:
    runner = SshRunner(node.settings())
    task = asyncio.ensure_future(runner.run([PY, "-c", HANG], timeout=30))
    await wait_for(lambda: bool(node.pids) and alive(node.pids[0]))
    node.drop_connections()
    with pytest.raises(NodeUnreachable, match="outcome unknown"):
        await task
    await runner.aclose()


async def test_sessions_are_bounded_per_connection(node: SshNode) -> None:
    runner = SshRunner(node.settings(max_sessions=2))
    code = "import time; time.sleep(0.3)"
    try:
        results = await asyncio.gather(*(runner.run([PY, "-c", code], timeout=30)
                                         for _ in range(5)))
    finally:
        await runner.aclose()
    assert [r.returncode for r in results] == [0] * 5
    assert node.max_active == 2
    assert runner.connects == 1


async def test_stream_over_ssh(node: SshNode) -> None:
    node.kill_on_close = False
    code = ("import os, time\nprint(os.getpid(), flush=True)\n"
            "for i in range(2): print(i, flush=True)\ntime.sleep(60)")
    runner = SshRunner(node.settings())
    try:
        stream = await runner.spawn([PY, "-c", code])
        pid = int(await stream.readline())
        assert [await stream.readline() for _ in range(2)] == [b"0\n", b"1\n"]
        await stream.close()
        await wait_for(lambda: not alive(pid), timeout=5)
        # The session slot was given back.
        assert (await runner.run([PY, "-c", "print(1)"], timeout=10)).stdout == "1\n"
    finally:
        await runner.aclose()
