"""The outbox: a turn stored but never published (the daemon died in between) is published by
the next instance before anything else, events with their `seq` (no gap) and orders with a
fresh TTL; orders of tasks that ended meanwhile are left out; nothing runs twice."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from vmd.bus import AgentTask, BusClient, SyncRequest
from vmd.bus.agent import order_message
from vmd.bus.publish import Event
from vmd.daemon import Daemon
from vmd.model import Action, Node, NodeName, NodeStatus, Request, Task, TaskId, TaskState
from vmd.store import EVENT, ORDER, Batch, OutboxMessage, Store

from .conftest import StartDaemon, seed
from .harness import EventLog, FakeAgent, eventually, vm_uuid


def _outbox(path: Path) -> list[tuple[str, str]]:
    # A second connection: WAL lets it read while the daemon writes.
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT kind, routing_key FROM outbox ORDER BY id").fetchall()
    finally:
        conn.close()


async def _stop_publishing(daemon: Daemon) -> None:
    """From now on turns are stored (with their outbox) but never published: the window of a
    crash between the write and the publish, held open."""
    publisher = daemon._tasks.pop("publisher")
    publisher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await publisher


async def test_stored_but_unpublished_turn_goes_out_after_a_crash(
    tmp_path: Path, start_daemon: StartDaemon, make_agent: Callable[..., Awaitable[FakeAgent]],
    make_client: Callable[..., Awaitable[BusClient]], events: EventLog,
) -> None:
    store = tmp_path / "vmd.sqlite3"
    first = await start_daemon(heartbeat_interval=1000)
    agent = await make_agent("node1")
    await seed(first, agent)
    await agent.stop_heartbeats()  # no more turns than the one this test makes
    await asyncio.sleep(0.2)
    await first.pipeline.flush()
    assert _outbox(store) == []  # published and confirmed: deleted
    web02 = first.world.vms.by_hostname["web02.example.com"]
    seq = web02.seq
    await _stop_publishing(first)

    alice = await make_client("alice")
    call = asyncio.create_task(alice.call(Request("PUT", "/vm/web02.example.com/status/start"),
                                          message_id="outbox-1", timeout=30))
    rows = await eventually(lambda: _outbox(store), what="the turn in the outbox")
    key = f".{web02.uuid}.status_change"
    assert [kind for kind, _ in rows] == [EVENT, ORDER] and rows[0][1].endswith(key), rows
    assert not events.status_changes(web02.uuid) or \
        events.status_changes(web02.uuid)[-1]["seq"] == seq
    assert agent.tasks.empty()
    await first.abort()  # the crash: nothing of that turn was published; the request unacked

    agent.auto_sync = False  # the node did not change: the re-sync finds nothing new
    second = await start_daemon(heartbeat_interval=1000)
    task = await agent.next_task()
    assert task.uuid == web02.uuid and task.action is Action.START
    assert task.deadline > time.time()
    changes = await events.wait(lambda _: [c for c in events.status_changes(web02.uuid)
                                           if c["seq"] == seq + 1])
    assert changes[0]["status"] == "starting"
    seqs = [c["seq"] for c in events.status_changes(web02.uuid)]
    assert seqs == list(range(seqs[0], seq + 2)), seqs  # no gap, no repeat
    # The redelivered request is answered from its idempotency record: the same task.
    reply = await call
    assert reply.code == 201 and reply.body["task_id"] == task.task_id
    await agent.result(task, state="running")
    await events.wait(lambda _: events.tasks_done(task.task_id))
    await asyncio.sleep(0.3)
    assert agent.tasks.empty()  # sent once after the restart, never run twice
    assert len(events.tasks_done(task.task_id)) == 1
    assert second.world.vms.by_hostname["web02.example.com"].status.value == "running"
    await second.pipeline.flush()
    assert _outbox(store) == []


async def test_outbox_left_in_the_store_is_published_at_start(
    tmp_path: Path, start_daemon: StartDaemon, make_agent: Callable[..., Awaitable[FakeAgent]],
    events: EventLog,
) -> None:
    now = time.time()
    node = NodeName("node1")

    def task(n: int, state: TaskState, deadline: float) -> Task:
        return Task(TaskId(f"0-{n:08d}-0000-0000-0000"), vm_uuid(n), Action.START, "PUT", {},
                    now - 5, deadline, node=node, state=state,
                    ended=None if state is TaskState.PENDING else now - 1)

    pending = task(1, TaskState.PENDING, now + 60)
    ended = task(2, TaskState.SUCCESS, now + 60)

    def order(n: int, t: Task) -> OutboxMessage:
        message = order_message(AgentTask(t.task_id, t.vm_uuid, f"vm{n}.example.com", node,
                                          t.action, {}, t.created, t.deadline), now=now)
        return OutboxMessage(n, ORDER, message.exchange, message.routing_key, message.body)

    event = Event("node.node9.status", {"node": "node9", "status": "online"}).outgoing()
    sync = order_message(SyncRequest(node=node, reason="test"))
    with Store.open(tmp_path / "vmd.sqlite3") as store:
        batch = Batch()
        batch.put_node(Node(node, NodeStatus.ONLINE))
        batch.put_task(pending)
        batch.put_task(ended)
        batch.put_outbox(OutboxMessage(10, EVENT, event.exchange, event.routing_key,
                                       event.body))
        batch.put_outbox(order(11, ended))
        batch.put_outbox(order(12, pending))
        batch.put_outbox(OutboxMessage(13, ORDER, sync.exchange, sync.routing_key, sync.body))
        store.write(batch)
    agent = await make_agent("node1", beat=False)
    agent.auto_sync = False
    daemon = await start_daemon(heartbeat_interval=1000)
    assert await events.wait(lambda _: events.of("node.node9.")) == [
        {"node": "node9", "status": "online"}]
    sent = await agent.next_task()
    assert sent.task_id == pending.task_id and sent.deadline == pending.deadline
    await asyncio.sleep(0.3)
    assert agent.tasks.empty()  # the ended task's order was left out
    assert [s.reason for s in agent.syncs].count("test") == 1
    await daemon.pipeline.flush()
    assert _outbox(tmp_path / "vmd.sqlite3") == []
