"""Tasks a principal can make (issue 12, "Unbounded growth"), without the broker: a GET
current joins the pending one, a full task of stream readers gives way to a new task, and
past `[daemon] max_pending_tasks` a request that would make a task is 429, also after a
restart. These replace the broker tests of the same behaviour (nothing of the I/O shell)."""

from __future__ import annotations

from support.fastdaemon import FastDaemon

from vmd.model import Reply, VmStatus

from .conftest import MakeFast

CURRENT = "/vm/web01.example.com/status/current"
TOO_MANY = Reply(429, {"detail": "Too many pending tasks"})
# Stream subscribers a task keeps (docs/reliability.md: at most 8).
MAX_STREAMS = 8


async def test_get_current_joins_the_pending_one(fast: FastDaemon) -> None:
    plain = [await fast.call("alice", "GET", CURRENT) for _ in range(5)]
    streams = [await fast.send(fast.bus.request("alice", "GET", CURRENT, stream=True))
               for _ in range(3)]
    admin = await fast.call("admin", "GET", CURRENT)
    task_id = plain[0].body["task_id"]
    assert {r.code for r in plain} == {201}
    assert {r.body["task_id"] for r in [*plain, admin]} == {task_id}
    (task,) = fast.tasks()
    assert task.task_id == task_id
    await fast.result(task, state="running")
    # Every stream-mode reader gets the one task's final reply.
    for request in streams:
        first, final = fast.bus.replies(request.correlation_id or "")
        assert first.body["task_id"] == task_id
        assert (final.code, final.body["task_id"]) == (200, task_id)
    # Ended: the next GET current makes a new task.
    later = await fast.call("alice", "GET", CURRENT)
    assert later.body["task_id"] != task_id
    assert [t.task_id for t in fast.tasks()] == [task_id, later.body["task_id"]]


async def test_a_full_task_of_stream_readers_gives_way_to_a_new_task(fast: FastDaemon) -> None:
    requests = [await fast.send(fast.bus.request("alice", "GET", CURRENT, stream=True))
                for _ in range(MAX_STREAMS + 1)]
    cids = [r.correlation_id or "" for r in requests]
    ids = [fast.bus.replies(cid)[0].body["task_id"] for cid in cids]
    assert len(set(ids[:MAX_STREAMS])) == 1
    assert ids[MAX_STREAMS] != ids[0]
    first, second = fast.tasks()
    assert (first.task_id, second.task_id) == (ids[0], ids[MAX_STREAMS])
    await fast.result(first, state="running")
    await fast.result(second, state="running")
    for cid in cids:  # nobody lost their final reply
        assert [r.code for r in fast.bus.replies(cid)] == [201, 200]


async def test_past_max_pending_tasks_a_new_task_is_429(make_fast: MakeFast) -> None:
    fast = await make_fast(max_pending_tasks=2)
    await fast.seed()
    start = await fast.call("alice", "PUT", "/vm/web02.example.com/status/start")
    current = await fast.call("alice", "GET", CURRENT)
    assert (start.code, current.code) == (201, 201)
    assert fast.core.pending_tasks == {"alice": 2}
    # At the limit: what would make a task is refused, and changes nothing.
    assert await fast.call("alice", "PUT", "/vm/web01.example.com/status/stop") == TOO_MANY
    assert fast.vm("web01.example.com").status is VmStatus.RUNNING
    assert await fast.call("alice", "GET", "/vm/zone01.example.com/status/current") == TOO_MANY
    # Joining the pending read makes no task: allowed.
    assert await fast.call("alice", "GET", CURRENT) == current
    # Every other answer comes first, as without the limit.
    assert (await fast.call("alice", "PUT", "/vm/nope.example.com/status/stop")).code == 404
    assert (await fast.call("alice", "PUT", "/vm/db01.example.com/status/stop")).code == 404
    assert (await fast.call("alice", "PUT", "/vm/web02.example.com/status/start")).code == 423
    # Other principals have their own count; admins have none.
    bob = await fast.call("bob", "PUT", "/vm/db01.example.com/status/stop")
    admin = [await fast.call("admin", "GET", f"/vm/{h}/status/current")
             for h in ("zone01.example.com", "web02.example.com", "internal.example.com")]
    assert bob.code == 201 and [r.code for r in admin] == [201, 201, 201]
    made = [start, current, bob, *admin]
    tasks = fast.tasks()
    assert [t.task_id for t in tasks] == [r.body["task_id"] for r in made]
    # One of alice's ends: she may make one again.
    await fast.result(tasks[1], state="running")
    assert fast.core.pending_tasks["alice"] == 1
    assert (await fast.call("alice", "PUT", "/vm/web01.example.com/status/stop")).code == 201


async def test_pending_tasks_are_counted_again_after_a_restart(make_fast: MakeFast) -> None:
    fast = await make_fast(max_pending_tasks=1)
    await fast.seed()
    assert (await fast.call("alice", "PUT", "/vm/web02.example.com/status/start")).code == 201
    await fast.restart()
    assert fast.core.pending_tasks == {"alice": 1}
    await fast.heartbeat()
    assert await fast.call("alice", "PUT", "/vm/web01.example.com/status/stop") == TOO_MANY
