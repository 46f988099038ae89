"""The local runner with real child processes (no simulator needed)."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from vmd.node_agent.driver import CannotExecute, LocalRunner

from .conftest import alive, children, group_members, wait_for

PY = sys.executable

# Prints its pid and a grandchild's pid, then hangs: both must die with the group.
FAMILY = """
import json, os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(json.dumps([os.getpid(), child.pid]), flush=True)
time.sleep(60)
"""


async def test_run_collects_rc_stdout_stderr() -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    result = await LocalRunner().run([PY, "-c", code], timeout=10)
    assert (result.returncode, result.stdout, result.stderr, result.timed_out) == (
        3, "out\n", "err\n", False)


async def test_environment_is_passed_through_and_extended(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMD_TEST_INHERITED", "a")
    code = "import os; print(os.environ['VMD_TEST_INHERITED'], os.environ['VMADM_SIM_ROOT'])"
    result = await LocalRunner(env={"VMADM_SIM_ROOT": "/x"}).run([PY, "-c", code], timeout=10)
    assert result.stdout == "a /x\n"


async def test_stdin_is_closed_when_no_input_and_fed_when_given() -> None:
    code = "import sys; print(repr(sys.stdin.read()))"
    runner = LocalRunner()
    assert (await runner.run([PY, "-c", code], timeout=10)).stdout == "''\n"
    fed = await runner.run([PY, "-c", code], stdin=b'{"ram": 1}', timeout=10)
    assert fed.stdout == "'{\"ram\": 1}'\n"


async def test_arguments_are_not_interpreted_by_a_shell() -> None:
    hostile = ["; rm -rf /", "$(id)", "`id`", "a b", "'\"", "\n"]
    code = "import json, sys; print(json.dumps(sys.argv[1:]))"
    result = await LocalRunner().run([PY, "-c", code, *hostile], timeout=10)
    assert json.loads(result.stdout) == hostile


async def test_timeout_kills_the_whole_process_group() -> None:
    result = await LocalRunner(kill_wait=5).run([PY, "-c", FAMILY], timeout=1.5)
    assert result.timed_out
    leader, grandchild = json.loads(result.stdout)
    assert not alive(leader)
    # Not the runner's child: SIGKILLed with the group, but it may still be exiting (its
    # pipes close before it is a zombie), so wait for it (it would sleep for 60 s).
    await wait_for(lambda: not alive(grandchild))
    await wait_for(lambda: group_members(leader) == [])


async def test_cancellation_kills_the_whole_process_group() -> None:
    task = asyncio.ensure_future(LocalRunner().run([PY, "-c", FAMILY, "cancel-me"], timeout=60))
    await wait_for(lambda: bool(children("cancel-me")))
    leader = children("cancel-me")[0]
    await wait_for(lambda: len(group_members(leader)) == 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The grandchild was killed with the group; it may still be exiting (not our child).
    await wait_for(lambda: group_members(leader) == [])


async def test_missing_executable_is_one_clear_error() -> None:
    with pytest.raises(CannotExecute, match="cannot execute '/nonexistent/vmadm'"):
        await LocalRunner().run(["/nonexistent/vmadm", "get"], timeout=5)


async def test_spawned_stream_reads_lines_and_close_kills_the_group() -> None:
    code = "import time\nfor i in range(3): print(i, flush=True)\ntime.sleep(60)"
    stream = await LocalRunner().spawn([PY, "-c", code])
    assert [await stream.readline() for _ in range(3)] == [b"0\n", b"1\n", b"2\n"]
    pid = stream.pid
    assert alive(pid)
    rc = await stream.close()
    assert rc == -9
    assert group_members(pid) == []


async def test_stream_ends_with_empty_read_and_keeps_stderr() -> None:
    code = "import sys; print('x'); print('boom', file=sys.stderr); sys.exit(134)"
    stream = await LocalRunner().spawn([PY, "-c", code])
    assert await stream.readline() == b"x\n"
    assert await stream.readline() == b""
    assert await stream.close() == 134
    assert "boom" in stream.stderr_tail()
