"""The outbox and the publish stage on the fake bus (the crash window that
tests/daemon/test_outbox.py tested on the broker; it keeps the start-up replay): a turn
stored but never published (the process died in between) is published by the next one,
events without a `seq` gap and orders with their deadline; a stream's final reply too; a
publish that fails is retried; nothing is acked before its turn is published. The crash
window is held open by a bus that never confirms (`FakeBus.stall`), so no timing decides
what the test sees."""

from __future__ import annotations

from pathlib import Path

from support.fastdaemon import FastDaemon
from support.postgres import daemon_store

from vmd.bus import Delivery
from vmd.model import Action, Reply, VmStatus
from vmd.store import EVENT, ORDER, REPLY, Store

START = "/vm/web02.example.com/status/start"


def _outbox(path: Path) -> list[str]:
    # Through a second store of its own on the daemon's (SQLite file or, with
    # VMD_TEST_STORE=postgresql, its database: support.postgres.daemon_store).
    with Store.open(daemon_store(path)) as store:
        return [message.kind for message in store.load_outbox()]


async def _crash_after_the_write(fast: FastDaemon, *requests: Delivery) -> None:
    """Hand the deliveries in; their turn is stored, then the process dies unpublished."""
    fast.bus.stall()
    for delivery in requests:
        await fast.on_command(delivery)
    await fast.bus.stalled.wait()  # the writer stored the turn; the publish never returns
    await fast.stop()


async def test_stored_but_unpublished_turn_goes_out_after_a_crash(fast: FastDaemon) -> None:
    store = fast.path / "vmd.sqlite3"
    await fast.idle()
    assert _outbox(store) == []  # published and confirmed: deleted
    web02 = fast.vm("web02.example.com")
    seq = web02.seq
    request = fast.bus.request("alice", "PUT", START, message_id="outbox-1")
    await _crash_after_the_write(fast, request)
    assert _outbox(store) == [EVENT, ORDER]
    assert fast.bus.settled(request).how is None  # never acked: the broker redelivers it

    await fast.start()  # the next process, on the same store
    (task,) = fast.tasks()
    assert task.uuid == web02.uuid and task.action is Action.START
    assert task.deadline > fast.clock()
    changes = fast.bus.status_changes(web02.uuid)
    assert [(c["seq"], c["status"]) for c in changes] == [(seq + 1, "starting")]
    # The redelivered request is answered from its idempotency record: the same task.
    again = fast.bus.request("alice", "PUT", START, message_id="outbox-1", redelivered=True)
    await fast.send(again)
    (reply,) = fast.bus.replies(again.correlation_id or "")
    assert reply.code == 201 and reply.body["task_id"] == task.task_id
    await fast.heartbeat()
    await fast.result(task, state="running")
    assert len(fast.tasks()) == 1  # sent once after the restart, never run twice
    assert len(fast.bus.tasks_done(task.task_id)) == 1
    assert fast.vm("web02.example.com").status is VmStatus.RUNNING
    await fast.idle()
    assert _outbox(store) == []


async def test_a_final_reply_stored_but_unpublished_is_sent_after_a_crash(
        fast: FastDaemon) -> None:
    store = fast.path / "vmd.sqlite3"
    request = await fast.send(fast.bus.request("alice", "PUT", START, message_id="final-1",
                                               stream=True))
    cid = request.correlation_id or ""
    (pending,) = fast.bus.replies(cid)
    (task,) = fast.tasks()
    fast.bus.stall()
    await fast.on_report(fast.bus.report(fast.task_result(task), "vmd-agent-node1"))
    await fast.bus.stalled.wait()
    await fast.stop()
    assert REPLY in _outbox(store)

    await fast.start()
    assert fast.bus.replies(cid) == [Reply(200, {
        "status": "SUCCESS", "task_id": pending.body["task_id"],
        "result": {"returncode": 0, "message": "Successfully started VM web02.example.com"}})]
    await fast.idle()
    assert _outbox(store) == []


async def test_a_failed_publish_is_retried_and_the_ack_waits_for_it(fast: FastDaemon) -> None:
    fast.bus.fail_publishes = 3  # the broker away for three attempts
    request = await fast.send(fast.bus.request("alice", "PUT", START))
    assert fast.bus.fail_publishes == 0
    (reply,) = fast.bus.replies(request.correlation_id or "")
    assert reply.code == 201
    assert len(fast.tasks()) == 1  # once, not once per attempt
    assert fast.bus.settled(request).how == "ack"


async def test_nothing_is_acked_before_its_turn_is_published(fast: FastDaemon) -> None:
    fast.bus.stall()
    request = fast.bus.request("alice", "PUT", START)
    await fast.on_command(request)
    await fast.bus.stalled.wait()
    assert fast.vm("web02.example.com").status is VmStatus.STARTING  # decided and stored
    assert fast.bus.settled(request).how is None
    assert fast.bus.replies(request.correlation_id or "") == []

