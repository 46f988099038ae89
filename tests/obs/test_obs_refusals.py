"""Refused agent messages: every one counted, logged once per sender and interval (no flood).

The clock is injected: the minute passes without waiting for it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest
import structlog

from vmd.obs.logging import configure_logging
from vmd.obs.metrics import DaemonMetrics, new_registry
from vmd.obs.refusals import Refusals


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def out(tmp_path: Path) -> Iterator[TextIO]:
    with (tmp_path / "log").open("w") as stream:
        yield stream


def lines(stream: TextIO) -> list[dict[str, Any]]:
    stream.flush()
    return [json.loads(line) for line in Path(stream.name).read_text().splitlines()]


def test_counted_every_time_logged_once_per_sender_and_minute(out: TextIO) -> None:
    configure_logging("info", "json", stream=out, cache=False)
    metrics = DaemonMetrics(new_registry())
    now = [1000.0]
    refusals = Refusals(metrics.refused, clock=lambda: now[0])
    for _ in range(500):  # a flood from one sender
        refusals.refuse("vmd-agent-node2", "wrong_node", "report refused", node="node1")
    refusals.refuse(None, "unknown_sender", "report refused")  # another sender: its own line
    now[0] += 59.0
    refusals.refuse("vmd-agent-node2", "wrong_task", "result refused")  # still quiet
    now[0] += 1.0
    refusals.refuse("vmd-agent-node2", "wrong_node", "report refused", node="node1")

    logged = lines(out)
    assert [(e["sender"], e["reason"], e["suppressed"]) for e in logged] == [
        ("vmd-agent-node2", "wrong_node", 0), ("<no user_id>", "unknown_sender", 0),
        ("vmd-agent-node2", "wrong_node", 500)]
    assert all(e["level"] == "warning" for e in logged)
    sample = metrics.registry.get_sample_value
    assert sample("vmd_agent_messages_refused_total", {"reason": "wrong_node"}) == 501
    assert sample("vmd_agent_messages_refused_total", {"reason": "wrong_task"}) == 1
    assert sample("vmd_agent_messages_refused_total", {"reason": "unknown_sender"}) == 1
    assert refusals.total == 503


def test_an_unknown_reason_is_counted_as_other() -> None:
    metrics = DaemonMetrics(new_registry())
    Refusals(metrics.refused).refuse("x", "made-up", "refused")
    assert metrics.registry.get_sample_value(
        "vmd_agent_messages_refused_total", {"reason": "other"}) == 1
