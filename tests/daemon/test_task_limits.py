"""Tasks a principal can make (issue 12, "Unbounded growth"): a GET current while one for the
same VM is pending joins it (stream mode included), and past `[daemon] max_pending_tasks`
pending tasks a request that would make one answers 429 `Too many pending tasks`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from vmd.bus import BusClient
from vmd.daemon.intake import MAX_STREAMS
from vmd.model import NodeStatus, Reply, Request, VmStatus

from .conftest import Cloud, StartDaemon, seed
from .harness import EventLog, FakeAgent, RawRequester, eventually

CURRENT = {"method": "GET", "path": "/vm/web01.example.com/status/current"}
TOO_MANY = Reply(429, {"detail": "Too many pending tasks"})


async def test_get_current_joins_the_pending_one(cloud: Cloud, raw: Callable[..., Any]) -> None:
    alice: RawRequester = await raw("alice")
    plain = [await cloud.call("alice", "GET", CURRENT["path"]) for _ in range(5)]
    streams = [await alice.send(CURRENT, stream=True) for _ in range(3)]
    admin = await cloud.call("admin", "GET", CURRENT["path"])
    task_id = plain[0].body["task_id"]
    assert {r.code for r in plain} == {201}
    assert {r.body["task_id"] for r in [*plain, admin]} == {task_id}
    for cid in streams:
        (first,) = await alice.replies_for(cid)
        assert first.body["task_id"] == task_id
    task = await cloud.agent.next_task()
    assert task.task_id == task_id
    await cloud.agent.result(task, state="running")
    # Every stream-mode reader gets the one task's final reply.
    for cid in streams:
        _, final = await alice.replies_for(cid, count=2)
        assert (final.code, final.body["task_id"]) == (200, task_id)
    # Ended: the next GET current makes a new task, the node's next one (none in between).
    later = await cloud.call("alice", "GET", CURRENT["path"])
    assert later.body["task_id"] != task_id
    assert (await cloud.agent.next_task()).task_id == later.body["task_id"]


async def test_a_full_task_of_stream_readers_gives_way_to_a_new_task(
        cloud: Cloud, raw: Callable[..., Any]) -> None:
    alice: RawRequester = await raw("alice")
    cids = [await alice.send(CURRENT, stream=True) for _ in range(MAX_STREAMS + 1)]
    ids = [(await alice.replies_for(cid))[0].body["task_id"] for cid in cids]
    assert len(set(ids[:MAX_STREAMS])) == 1
    assert ids[MAX_STREAMS] != ids[0]
    first, second = await cloud.agent.next_task(), await cloud.agent.next_task()
    assert (first.task_id, second.task_id) == (ids[0], ids[MAX_STREAMS])
    await cloud.agent.result(first, state="running")
    await cloud.agent.result(second, state="running")
    for cid in cids:  # nobody lost their final reply
        assert [r.code for r in await alice.replies_for(cid, count=2)] == [201, 200]


async def _limited(start_daemon: StartDaemon, make_agent: Callable[..., Awaitable[FakeAgent]],
                   make_client: Callable[..., Awaitable[BusClient]], events: EventLog,
                   limit: int) -> Cloud:
    daemon = await start_daemon(max_pending_tasks=limit)
    agent = await make_agent("node1")
    await seed(daemon, agent)
    return Cloud(daemon, agent, events, await make_client("admin"), await make_client("alice"),
                 await make_client("bob"))


async def test_past_max_pending_tasks_a_new_task_is_429(
    start_daemon: StartDaemon, make_agent: Callable[..., Awaitable[FakeAgent]],
    make_client: Callable[..., Awaitable[BusClient]], events: EventLog,
) -> None:
    cloud = await _limited(start_daemon, make_agent, make_client, events, 2)
    start = await cloud.call("alice", "PUT", "/vm/web02.example.com/status/start")
    current = await cloud.call("alice", "GET", CURRENT["path"])
    assert (start.code, current.code) == (201, 201)
    assert cloud.daemon.core.pending_tasks == {"alice": 2}
    # At the limit: what would make a task is refused, and changes nothing.
    assert await cloud.call("alice", "PUT", "/vm/web01.example.com/status/stop") == TOO_MANY
    assert cloud.vm("web01.example.com").status is VmStatus.RUNNING
    assert await cloud.call("alice", "GET", "/vm/zone01.example.com/status/current") == TOO_MANY
    # Joining the pending read makes no task: allowed.
    assert await cloud.call("alice", "GET", CURRENT["path"]) == current
    # Every other answer comes first, as without the limit.
    assert (await cloud.call("alice", "PUT", "/vm/nope.example.com/status/stop")).code == 404
    assert (await cloud.call("alice", "PUT", "/vm/db01.example.com/status/stop")).code == 404
    again = await cloud.call("alice", "PUT", "/vm/web02.example.com/status/start")
    assert again.code in (409, 423)
    assert (await cloud.call("alice", "GET", "/vm/web01.example.com/status")).code == 200
    # Other principals have their own count; admins have none.
    bob = await cloud.call("bob", "PUT", "/vm/db01.example.com/status/stop")
    admin = [await cloud.call("admin", "GET", f"/vm/{h}/status/current")
             for h in ("zone01.example.com", "web02.example.com", "internal.example.com")]
    assert bob.code == 201 and [r.code for r in admin] == [201, 201, 201]
    # The node got exactly the tasks that were made, in order.
    made = [start, current, bob, *admin]
    tasks = [await cloud.agent.next_task() for _ in made]
    assert [t.task_id for t in tasks] == [r.body["task_id"] for r in made]
    # One of alice's ends: she may make one again.
    await cloud.agent.result(tasks[1], state="running")
    await cloud.events.wait(lambda _: cloud.events.tasks_done(tasks[1].task_id))
    assert cloud.daemon.core.pending_tasks["alice"] == 1
    assert (await cloud.call("alice", "PUT", "/vm/web01.example.com/status/stop")).code == 201


async def test_pending_tasks_are_counted_again_after_a_restart(
    start_daemon: StartDaemon, make_agent: Callable[..., Awaitable[FakeAgent]],
    make_client: Callable[..., Awaitable[BusClient]], events: EventLog,
) -> None:
    cloud = await _limited(start_daemon, make_agent, make_client, events, 1)
    assert (await cloud.call("alice", "PUT", "/vm/web02.example.com/status/start")).code == 201
    cloud.agent.auto_sync = False  # the node's view may not end the task meanwhile
    await cloud.daemon.shutdown()
    daemon = await start_daemon(max_pending_tasks=1)
    assert daemon.core.pending_tasks == {"alice": 1}
    await eventually(lambda: daemon.world.nodes[cloud.agent.node].status is NodeStatus.ONLINE,
                     what="node1 online")
    reply = await cloud.alice.call(Request("PUT", "/vm/web01.example.com/status/stop"),
                                   timeout=10)
    assert reply == TOO_MANY
