"""The journal of started tasks: durable, bounded, locked, group-committed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from vmd.model import OutcomeKind, TaskId, TaskOutcome
from vmd.node_agent.journal import RETENTION, Journal, JournalError, journal_path

OK = TaskOutcome(OutcomeKind.SUCCESS, 0, "Successfully completed stop for VM h",
                 definition={"alias": "x"})


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def opened(path: Path, clock: Clock | None = None) -> Journal:
    j = Journal(path, clock=clock or Clock())
    j.open()
    return j


async def test_entries_survive_a_reopen(tmp_path: Path) -> None:
    path = journal_path(tmp_path / "state", "node01.example.com")
    assert path.name == "journal-node01.example.com.jsonl"
    j = opened(path)
    await j.started(TaskId("0-a"), "stop", "u1")
    await j.started(TaskId("0-b"), "start", "u2")
    await j.finished(TaskId("0-b"), OK)
    await j.started(TaskId("0-c"), "start", "u3")
    await j.dropped(TaskId("0-c"))
    j.close()

    again = opened(path)
    a, b = again.get("0-a"), again.get("0-b")
    assert a is not None and (a.action, a.uuid, a.outcome) == ("stop", "u1", None)
    assert b is not None and b.outcome == OK
    assert again.get("0-c") is None and again.get("0-z") is None
    again.close()


async def test_old_entries_are_forgotten(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "j.jsonl"
    j = opened(path, clock)
    await j.started(TaskId("old"), "stop", "u")
    clock.now += RETENTION / 2
    await j.started(TaskId("new"), "stop", "u")
    clock.now += RETENTION / 2 + 1
    assert j.get("old") is None and j.get("new") is not None
    j.close()
    j = opened(path, clock)  # compacted at open
    assert len(j) == 1
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["new"]
    j.close()


async def test_a_torn_last_line_is_skipped_a_corrupt_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    j = opened(path)
    await j.started(TaskId("0-a"), "stop", "u")
    j.close()
    with path.open("ab") as fh:
        fh.write(b'{"e": "start", "id": "0-b", "act')
    j = opened(path)
    assert j.get("0-a") is not None and j.get("0-b") is None
    j.close()
    path.write_text('garbage\n{"e":"start","id":"0-a","action":"stop","uuid":"u","t":1e6}\n')
    with pytest.raises(JournalError, match="line 1 is corrupt"):
        opened(path)


async def test_one_agent_per_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    first = opened(path)
    with pytest.raises(JournalError, match="locked by another vmd agent"):
        opened(path)
    first.close()
    opened(path).close()


async def test_concurrent_starts_share_fsyncs_and_the_file_stays_small(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    j = opened(path)
    await asyncio.gather(*(j.started(TaskId(f"0-{i}"), "stop", "u") for i in range(200)))
    assert len(j) == 200
    assert j.fsyncs < 200
    print(f"200 concurrent journaled starts: {j.fsyncs} fsyncs")
    for n in range(6):
        ids = [TaskId(f"1-{n}-{i}") for i in range(200)]
        await asyncio.gather(*(j.started(t, "start", "u") for t in ids))
        await asyncio.gather(*(j.dropped(t) for t in ids))
    await asyncio.sleep(0.2)  # let a rewrite finish
    assert len(path.read_text().splitlines()) < 1000
    j.close()
    j = opened(path)
    assert len(j) == 200
    j.close()
