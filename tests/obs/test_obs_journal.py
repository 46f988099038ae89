"""Logs for journald: each line's syslog priority in front of it when stdout is the journal.

Real processes: the child's stdout is a file whose device:inode the test puts in
`$JOURNAL_STREAM`, exactly the check systemd documents for a journal stream socket; a
mismatching value (inherited from a parent whose output went to the journal) or none
leaves the lines bare. Library lines (stdlib logging) carry it too, and aiormq's duplicate
of vmd's connect failure is demoted to debug.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vmd.obs.logging import PRIORITIES, journal_stream

CHILD = textwrap.dedent("""
    import logging, sys
    from vmd.obs.logging import configure_logging, get_logger
    configure_logging(sys.argv[1], sys.argv[2])
    log = get_logger("vmd.test")
    log.debug("d"); log.info("i"); log.warning("w"); log.error("e"); log.critical("c")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("x")
    logging.getLogger("aio_pika.robust_connection").warning("library warning")
    logging.getLogger("asyncssh").error("library error")
    logging.getLogger("aiormq.connection").error(
        "error when creating transport: %r", ConnectionRefusedError(111, "refused"))
    logging.getLogger("aiormq.connection").error("another aiormq error")
""")


def run_child(tmp_path: Path, level: str, fmt: str, *, journal: str | None) -> list[str]:
    out = tmp_path / f"stdout-{level}-{fmt}"
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    with out.open("wb") as stdout:
        st = os.fstat(stdout.fileno())
        if journal == "mine":
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        elif journal == "other":
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino + 1}"
        subprocess.run([sys.executable, "-c", CHILD, level, fmt], stdout=stdout, env=env,
                       check=True, timeout=60)
    return out.read_text().splitlines()


def split(line: str) -> tuple[int, dict[str, object]]:
    assert line.startswith("<") and line[2] == ">", line
    return int(line[1]), json.loads(line[3:])


def test_each_line_carries_its_priority_on_the_journal(tmp_path: Path) -> None:
    lines = [split(line) for line in run_child(tmp_path, "debug", "json", journal="mine")]
    got = [(prio, entry["event"]) for prio, entry in lines]
    assert got == [(7, "d"), (6, "i"), (4, "w"), (3, "e"), (2, "c"), (3, "x"),
                   (4, "library warning"), (3, "library error"),
                   (7, "error when creating transport: ConnectionRefusedError(111, 'refused')"),
                   (3, "another aiormq error")]
    for prio, entry in lines:
        assert PRIORITIES[str(entry["level"])] == prio
    assert lines[5][1]["exception"]  # the traceback stays inside the one JSON line


def test_above_debug_the_duplicate_connect_failure_is_not_logged(tmp_path: Path) -> None:
    events = [split(line)[1]["event"] for line in
              run_child(tmp_path, "info", "json", journal="mine")]
    assert "d" not in events and "another aiormq error" in events
    assert not any(str(e).startswith("error when creating transport") for e in events)


def test_every_line_of_a_console_traceback_is_prefixed(tmp_path: Path) -> None:
    lines = run_child(tmp_path, "info", "console", journal="mine")
    assert len(lines) > 9  # the traceback takes several lines
    assert all(line[:3] in {"<6>", "<4>", "<3>", "<2>"} for line in lines), lines
    assert any("RuntimeError" in line and line.startswith("<3>") for line in lines)


@pytest.mark.parametrize("journal", ["other", None])
def test_no_prefix_when_stdout_is_not_the_journal(tmp_path: Path, journal: str | None) -> None:
    lines = run_child(tmp_path, "debug", "json", journal=journal)
    assert len(lines) == 10
    assert all(line.startswith("{") for line in lines), lines


def test_journal_stream_needs_a_real_matching_descriptor(tmp_path: Path) -> None:
    with (tmp_path / "f").open("w") as f:
        st = os.fstat(f.fileno())
        assert journal_stream(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not journal_stream(f, {"JOURNAL_STREAM": f"{st.st_dev}:x"})
        assert not journal_stream(f, {})
    import io

    assert not journal_stream(io.StringIO(), {"JOURNAL_STREAM": "1:2"})


def run_with_stderr_on_journal(tmp_path: Path, args: list[str]) -> tuple[int, str]:
    err = tmp_path / "stderr"
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET")}
    with err.open("wb") as stderr:
        st = os.fstat(stderr.fileno())
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        done = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=stderr, env=env,
                              timeout=60, check=False)
    return done.returncode, err.read_text()


def test_a_failed_start_is_an_error_line_on_the_journal(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "vmd.toml"
    config.write_text(f"""\
[broker]
url = "amqp://vmd:vmd@127.0.0.1:{port}/x"
connect_attempts = 1
[daemon]
store = "{tmp_path / 'vmd.sqlite3'}"
metrics = "127.0.0.1:0"
[auth]
admins = ["admin"]
[auth.agents]
"vmd-agent-node1" = ["node1"]
""")
    vmd = str(Path(sys.executable).parent / "vmd")
    code, err = run_with_stderr_on_journal(tmp_path, [vmd, "daemon", "-c", str(config)])
    assert code == 1
    [line] = err.splitlines()
    assert line.startswith("<3>vmd daemon: cannot connect to "), line
    bad = tmp_path / "bad.toml"
    bad.write_text("[daemon]\nshard = -1\n")
    code, err = run_with_stderr_on_journal(tmp_path, [vmd, "daemon", "-c", str(bad)])
    lines = err.splitlines()
    assert code == 2 and lines[0].startswith("<3>vmd daemon: "), lines
    assert all(line.startswith("<3>") for line in lines), lines


def test_a_crash_traceback_is_critical_on_every_line(tmp_path: Path) -> None:
    child = ("from vmd.obs.logging import configure_logging\n"
             "configure_logging('info', 'json')\n"
             "def bug():\n    raise RuntimeError('a bug')\n"
             "bug()\n")
    code, err = run_with_stderr_on_journal(tmp_path, [sys.executable, "-c", child])
    assert code == 1
    lines = err.splitlines()
    assert len(lines) >= 4 and all(line.startswith("<2>") for line in lines), lines
    assert lines[-1] == "<2>RuntimeError: a bug"
