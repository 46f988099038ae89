"""The outbox on the real broker: what the store holds at start-up (the previous process
died between a write and its publish) is published before anything else, events as stored
and orders with a fresh TTL; orders of tasks that ended meanwhile are left out. The crash
window itself (a turn stored, never published; the next process publishes it without a
`seq` gap; the redelivered request answered from its record) is tested without the broker
in tests/daemon/fast/test_outbox.py."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from support.postgres import daemon_store

from vmd.bus import AgentTask, SyncRequest
from vmd.bus.agent import order_message
from vmd.bus.publish import Event
from vmd.model import Action, Node, NodeName, NodeStatus, Task, TaskId, TaskState
from vmd.store import EVENT, ORDER, Batch, OutboxMessage, Store

from .conftest import StartDaemon
from .harness import EventLog, FakeAgent, eventually, vm_uuid


def _outbox(path: Path) -> list[tuple[str, str]]:
    # A second store on the daemon's (WAL lets it read while the daemon writes; with
    # VMD_TEST_STORE=postgresql the daemon's database: support.postgres.daemon_store).
    with Store.open(daemon_store(path)) as store:
        return [(message.kind, message.routing_key) for message in store.load_outbox()]


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
    with Store.open(daemon_store(tmp_path / "vmd.sqlite3")) as store:
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
    # The sync request was stored after both task orders and goes out after them, on the
    # same queue: once the agent has it, it has every order the outbox sent.
    await eventually(lambda: "test" in [s.reason for s in agent.syncs], what="the sync")
    assert agent.tasks.empty()  # the ended task's order was left out
    assert [s.reason for s in agent.syncs].count("test") == 1
    await daemon.pipeline.flush()
    assert _outbox(tmp_path / "vmd.sqlite3") == []
