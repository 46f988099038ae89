"""A task keeps at most `MAX_STREAMS` stream subscribers: each repeat of a stream request
(same message_id) added one and rewrote the whole task, so repeating one request thousands
of times made the daemon's work grow with the square of the repeats (found by the fault
suite, docs/reliability.md). The newest repeats are the ones answered at the end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from vmd.daemon.core import STREAMS
from vmd.daemon.intake import MAX_STREAMS

from .conftest import Cloud


async def test_repeats_of_a_stream_request_keep_a_bounded_list(
    cloud: Cloud, raw: Callable[..., Any],
) -> None:
    alice = await raw("alice")
    body = {"method": "PUT", "path": "/vm/web02.example.com/status/start"}
    first = await alice.send(body, message_id="bounded-1", stream=True)
    [pending] = await alice.replies_for(first)
    task = await cloud.agent.next_task()
    repeats = [await alice.send(body, message_id="bounded-1", stream=True) for _ in range(20)]
    for cid in repeats:
        [again] = await alice.replies_for(cid)
        assert again == pending
    subscribers = cloud.daemon.world.tasks.get(task.task_id).params[STREAMS]
    assert [s["correlation_id"] for s in subscribers] == repeats[-MAX_STREAMS:]
    await cloud.agent.result(task)
    for cid in repeats[-MAX_STREAMS:]:
        _, final = await alice.replies_for(cid, count=2)
        assert final.code == 200 and final.body["task_id"] == task.task_id
    await asyncio.sleep(0.3)
    assert [len(alice.replies[cid]) for cid in [first, *repeats[:-MAX_STREAMS]]] == [1] * 13
