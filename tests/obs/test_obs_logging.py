"""vmd.obs.logging: JSON lines with the bound context, stdlib records in the same shape,
level filtering, and the terminal/non-terminal choice in a real process."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pty
import select
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest
import structlog

from vmd.obs.logging import (
    CONTEXT_KEYS,
    bind_context,
    configure_logging,
    get_logger,
    json_serializer_name,
    log_context,
)

CONTEXT = {
    "task_id": "0-a2327793-2600-423d-9f07",
    "vm": "8a1a4e6c-0000-4000-8000-00000000abcd",
    "hostname": "web01.example.com",
    "node": "node01",
    "correlation_id": "c-1",
}


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Leave structlog and the root logger as they were (other tests share the process)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    asyncssh_level = logging.getLogger("asyncssh").level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("asyncssh").setLevel(asyncssh_level)


@pytest.fixture
def out(tmp_path: Path) -> Iterator[TextIO]:
    # A real file: has a binary buffer underneath, as stdout under systemd has.
    with (tmp_path / "log").open("w") as stream:
        yield stream


def lines(stream: TextIO) -> list[dict[str, Any]]:
    stream.flush()
    text = Path(stream.name).read_text()
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize("fast", [pytest.param(True, id="orjson-if-present"),
                                  pytest.param(False, id="stdlib-json")])
def test_json_lines_carry_the_bound_context(out: TextIO, fast: bool) -> None:
    assert configure_logging("info", "json", stream=out, fast=fast, cache=False) == "json"
    log = get_logger("vmd.daemon.test")
    log.info("outside")
    with log_context(**CONTEXT):
        log.info("task sent", action="stop")
    log.info("after")

    first, inside, after = lines(out)
    assert inside["event"] == "task sent"
    assert inside["action"] == "stop"
    assert inside["level"] == "info"
    assert inside["logger"] == "vmd.daemon.test"
    assert inside["timestamp"].endswith("Z")
    for key in CONTEXT_KEYS:
        assert inside[key] == CONTEXT[key]
        assert key not in first
        assert key not in after


def test_serializer_is_reported() -> None:
    assert json_serializer_name(fast=False) == "json"
    assert json_serializer_name(fast=True) in ("orjson", "json")


def test_context_nests_and_skips_unknown_values(out: TextIO) -> None:
    configure_logging("info", "json", stream=out, cache=False)
    log = get_logger("t")
    with log_context(correlation_id="c-9", vm=None), log_context(vm="u-1", task_id="0-x"):
        log.info("inner")
    with log_context(correlation_id="c-9"):
        log.info("outer")
    inner, outer = lines(out)
    assert (inner["correlation_id"], inner["vm"], inner["task_id"]) == ("c-9", "u-1", "0-x")
    assert outer["correlation_id"] == "c-9"
    assert "vm" not in outer and "task_id" not in outer


async def test_context_does_not_leak_between_concurrent_tasks(out: TextIO) -> None:
    configure_logging("info", "json", stream=out, cache=False)
    log = get_logger("t")

    async def worker(vm: str) -> None:
        bind_context(vm=vm)  # for the rest of this task only
        for step in range(3):
            log.info("step", step=step)
            await asyncio.sleep(0)

    with log_context(correlation_id="batch"):
        await asyncio.gather(worker("vm-a"), worker("vm-b"))
    log.info("done")

    records = lines(out)
    steps = [r for r in records if r["event"] == "step"]
    assert len(steps) == 6
    # Interleaved (the sleeps yield), yet each line names its own task's VM.
    assert [r["vm"] for r in steps[:2]] == ["vm-a", "vm-b"]
    assert sorted(r["vm"] for r in steps) == ["vm-a"] * 3 + ["vm-b"] * 3
    assert all(r["correlation_id"] == "batch" for r in steps)
    assert "vm" not in records[-1]


def test_stdlib_records_are_json_with_the_same_keys(out: TextIO) -> None:
    configure_logging("info", "json", stream=out, cache=False)
    with log_context(node="node01", correlation_id="c-2"):
        logging.getLogger("aiormq.connection").warning("Connection lost: %s", "reset")
        get_logger("vmd.bus").info("reconnecting")
    foreign, own = lines(out)
    assert foreign["event"] == "Connection lost: reset"
    assert foreign["level"] == "warning"
    assert foreign["logger"] == "aiormq.connection"
    assert (foreign["node"], foreign["correlation_id"]) == ("node01", "c-2")
    assert set(own) - {"logger"} <= set(foreign) | {"logger"}
    assert own["event"] == "reconnecting" and own["node"] == "node01"


def test_exceptions_are_one_json_line_without_locals(out: TextIO) -> None:
    configure_logging("info", "json", stream=out, cache=False)
    secret = "amqp://vmd:hunter2@broker/vmd"  # a local that must not reach the journal
    try:
        raise RuntimeError(f"boom near {len(secret)}")
    except RuntimeError:
        get_logger("t").exception("failed")
        logging.getLogger("asyncio").exception("also failed")
    out.flush()
    assert "hunter2" not in Path(out.name).read_text()
    own, foreign = lines(out)
    for record in (own, foreign):
        assert record["level"] == "error"
        assert record["exception"][0]["exc_type"] == "RuntimeError"
        assert record["exception"][0]["exc_value"] == "boom near 29"


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        pytest.param("debug", ["d", "i", "w", "sd", "si", "sw"], id="debug"),
        pytest.param("info", ["i", "w", "si", "sw"], id="info"),
        pytest.param("warning", ["w", "sw"], id="warning"),
        pytest.param("error", [], id="error"),
    ],
)
def test_level_filters_both_paths(out: TextIO, level: str, expected: list[str]) -> None:
    configure_logging(level, "json", stream=out, cache=False)
    log = get_logger("t")
    std = logging.getLogger("aio_pika.test")
    log.debug("d")
    log.info("i")
    log.warning("w")
    std.debug("sd")
    std.info("si")
    std.warning("sw")
    got = [r["event"] for r in lines(out)]
    assert sorted(got) == sorted(expected)


def test_asyncssh_info_is_quiet_unless_debugging(out: TextIO) -> None:
    configure_logging("info", "json", stream=out, cache=False)
    logging.getLogger("asyncssh").info("Opening SSH connection")
    logging.getLogger("asyncssh").warning("Connection lost")
    assert [r["event"] for r in lines(out)] == ["Connection lost"]


def test_bad_level_or_format_is_refused(out: TextIO) -> None:
    with pytest.raises(ValueError, match="log level"):
        configure_logging("verbose", stream=out)
    with pytest.raises(ValueError, match="log format"):
        configure_logging("info", "xml", stream=out)


# --- in a real process: stdout a pipe (journald) or a terminal --------------------------

CHILD = textwrap.dedent("""
    import logging
    from vmd.obs.logging import configure_logging, get_logger, log_context
    print(configure_logging("info", "auto"), flush=True)
    log = get_logger("vmd.child")
    with log_context(vm="vm-1", task_id="0-t"):
        for i in range(50):
            log.info("own", i=2 * i)
            logging.getLogger("aiormq").warning("foreign %d", 2 * i + 1)
""")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    return env


def test_pipe_gets_json_lines_in_order() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          timeout=60, env=child_env(), check=True)
    first, *rest = done.stdout.splitlines()
    assert first == "json"
    records = [json.loads(line) for line in rest]
    assert len(records) == 100
    # structlog writes bytes to stdout's buffer, stdlib through its text layer: still in order.
    assert [r.get("i", -1) for r in records[::2]] == list(range(0, 100, 2))
    assert [r["event"] for r in records[1::2]] == [f"foreign {n}" for n in range(1, 100, 2)]
    assert all(r["vm"] == "vm-1" and r["task_id"] == "0-t" for r in records)


def test_terminal_gets_readable_text() -> None:
    primary, secondary = pty.openpty()
    chunks = []
    try:
        with subprocess.Popen([sys.executable, "-c", CHILD], stdout=secondary,
                              stderr=subprocess.PIPE, env=child_env()) as proc:
            os.close(secondary)
            while True:
                ready, _, _ = select.select([primary], [], [], 30)
                assert ready, "no output from the child within 30 s"
                try:
                    chunk = os.read(primary, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            assert proc.stderr is not None
            errors = proc.stderr.read().decode()
            assert proc.wait(timeout=30) == 0, errors
    finally:
        os.close(primary)
    text = b"".join(chunks).decode()
    first, *rest = text.splitlines()
    assert first.strip() == "console"
    assert len(rest) == 100
    assert "own" in rest[0] and "vm-1" in rest[0]
    assert "foreign 1" in rest[1]
    with pytest.raises(json.JSONDecodeError):
        json.loads(rest[0])
