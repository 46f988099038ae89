"""Stream mode's final reply goes through the outbox: a daemon killed after storing a task's
end but before publishing its final reply sends it at its next start, with the requester's
correlation id. Found by the fault suite (tests/reliability: daemon SIGKILL under load left a
stream requester waiting forever, docs/reliability.md)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from vmd.model import Reply
from vmd.store import REPLY

from .conftest import StartDaemon, seed
from .harness import FakeAgent, eventually
from .test_outbox import _stop_publishing


def _kinds(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [kind for (kind,) in conn.execute("SELECT kind FROM outbox ORDER BY id")]
    finally:
        conn.close()


async def test_a_final_reply_stored_but_unpublished_is_sent_after_a_crash(
    tmp_path: Path, start_daemon: StartDaemon, make_agent: Callable[..., Awaitable[FakeAgent]],
    raw: Callable[..., Any],
) -> None:
    store = tmp_path / "vmd.sqlite3"
    first = await start_daemon(heartbeat_interval=1000)
    agent = await make_agent("node1")
    await seed(first, agent)
    await agent.stop_heartbeats()
    alice = await raw("alice")
    cid = await alice.send({"method": "PUT", "path": "/vm/web02.example.com/status/start"},
                           message_id="final-1", stream=True)
    [pending] = await alice.replies_for(cid)
    assert pending.code == 201
    task = await agent.next_task()
    await first.pipeline.flush()
    await _stop_publishing(first)  # the task's end is stored, never published
    await agent.result(task, state="running")
    await eventually(lambda: REPLY in _kinds(store), what="the final reply in the outbox")
    await first.abort()
    assert len(alice.replies[cid]) == 1

    agent.auto_sync = False
    second = await start_daemon(heartbeat_interval=1000)
    _, final = await alice.replies_for(cid, count=2)
    assert final == Reply(200, {"status": "SUCCESS", "task_id": pending.body["task_id"],
                                "result": {"returncode": 0, "message":
                                           "Successfully started VM web02.example.com"}})
    await asyncio.sleep(0.3)
    assert len(alice.replies[cid]) == 2  # once
    await second.pipeline.flush()
    assert _kinds(store) == []
