"""Task ends the daemon decides on its own, on the fake clock (tests/daemon/test_tasks.py's
behaviour, without the broker or waiting): the deadline revokes a task and the VM goes back;
a task dead-lettered unrun from its queue ends at once; an ended task forgotten by memory
is read from the store. "Not yet" is the clock short of the deadline and one tick."""

from __future__ import annotations

import pytest
from support.fastdaemon import FastDaemon, vm_uuid

from vmd.bus.topology import ORDERS_EXCHANGE
from vmd.model import Action, Reply, VmStatus

from .conftest import MakeFast

REVOKED = {"message": "Task deadline exceeded", "detail": "Task deadline exceeded"}


async def test_deadline_revokes_and_the_vm_goes_back(fast: FastDaemon) -> None:
    await fast.heartbeat(interval=1000.0)  # the node stays online across the jump below
    request = await fast.send(fast.bus.request("alice", "PUT", "/vm/web02.example.com/status/start",
                                               stream=True))
    cid = request.correlation_id or ""
    (task,) = fast.tasks()
    web02 = fast.vm("web02.example.com")
    assert web02.status is VmStatus.STARTING
    assert task.deadline == pytest.approx(fast.clock() + 330.0)
    fast.clock.advance(329.0)
    await fast.tick()
    assert web02.status is VmStatus.STARTING  # not yet
    assert len(fast.bus.replies(cid)) == 1 and fast.bus.tasks_done(task.task_id) == []
    fast.clock.advance(2.0)
    await fast.tick()
    assert fast.bus.replies(cid)[1] == Reply(410, {"status": "REVOKED", "task_id": task.task_id,
                                                   "result": REVOKED})
    assert web02.status is VmStatus.STOPPED
    (done,) = fast.bus.tasks_done(task.task_id)
    assert done["status"] == "REVOKED"
    back = fast.bus.status_changes(web02.uuid)[-1]
    assert (back["previous"], back["status"], back["cause"]) == ("starting", "stopped", "task")
    _, resync = fast.tasks()  # the node is online: re-sync at once
    assert (resync.action, resync.uuid) == (Action.CURRENT, vm_uuid(2))
    # A late result changes nothing: the task ended once.
    await fast.result(task)
    await fast.result(resync, state="stopped")
    assert len(fast.bus.tasks_done(task.task_id)) == 1
    assert len(fast.bus.tasks_done(resync.task_id)) == 1
    assert web02.status is VmStatus.STOPPED
    outcomes = fast.metrics.tasks
    assert outcomes.labels("start", "revoked")._value.get() == 1
    assert outcomes.labels("current", "success")._value.get() == 1


async def test_a_deadline_passed_while_no_daemon_ran_ends_at_start(fast: FastDaemon) -> None:
    reply = await fast.call("alice", "PUT", "/vm/web02.example.com/status/start")
    fast.clock.advance(331.0)
    await fast.restart()
    assert fast.expired_at_start == 1
    (done,) = fast.bus.tasks_done(reply.body["task_id"])
    assert done["status"] == "REVOKED"
    assert fast.vm("web02.example.com").status is VmStatus.STOPPED


async def test_task_expired_in_its_queue_ends_at_once(fast: FastDaemon) -> None:
    reply = await fast.call("alice", "PUT", "/vm/web02.example.com/status/start")
    (order,) = [m for m in fast.bus.published if m.exchange == ORDERS_EXCHANGE]
    assert order.expiration_ms == 330_000  # its TTL is its deadline
    fast.clock.advance(330.0)  # the broker dead-letters it at its TTL: no tick needed
    delivery = fast.bus.dead_lettered_task(order)
    await fast.on_report(delivery)
    await fast.idle()
    assert fast.bus.settled(delivery).how == "ack"
    (done,) = fast.bus.tasks_done(reply.body["task_id"])
    assert done["status"] == "REVOKED"
    assert fast.vm("web02.example.com").status is VmStatus.STOPPED


async def test_a_dead_lettered_task_not_from_the_daemon_is_refused(fast: FastDaemon) -> None:
    reply = await fast.call("alice", "PUT", "/vm/web02.example.com/status/start")
    (order,) = [m for m in fast.bus.published if m.exchange == ORDERS_EXCHANGE]
    forged = fast.bus.delivery("vmd.agent.reports", order.body, user_id="vmd-agent-node1",
                               message_type=order.type,
                               headers={"x-first-death-reason": "expired"})
    await fast.on_report(forged)
    await fast.idle()
    assert fast.bus.settled(forged).how == "ack"  # dropped: a repeat is refused again
    assert fast.bus.tasks_done(reply.body["task_id"]) == []
    assert fast.vm("web02.example.com").status is VmStatus.STARTING


async def test_ended_task_is_read_from_the_store(make_fast: MakeFast) -> None:
    fast = await make_fast(opts={"keep_ended": 0})
    await fast.seed()
    reply = await fast.call("alice", "PUT", "/vm/web01.example.com/status/stop")
    (task,) = fast.tasks()
    await fast.result(task)
    assert fast.world.tasks.get(task.task_id) is None  # forgotten by memory
    path = f"/task/{reply.body['task_id']}/status"
    assert await fast.call("alice", "GET", path) == Reply(200, {
        "status": "SUCCESS", "task_id": task.task_id, "result": {
            "returncode": 0, "message": "Successfully completed stop for VM web01.example.com"}})
    assert await fast.call("bob", "GET", path) == Reply(
        404, {"detail": "Task does not exist (anymore)"})


async def test_ended_tasks_leave_memory_on_the_clock(make_fast: MakeFast) -> None:
    fast = await make_fast(opts={"keep_ended_seconds": 600.0})
    await fast.seed()
    await fast.call("alice", "PUT", "/vm/web01.example.com/status/stop")
    (task,) = fast.tasks()
    await fast.result(task)
    fast.clock.advance(599.0)
    await fast.tick()
    assert fast.world.tasks.get(task.task_id) is not None
    fast.clock.advance(2.0)
    await fast.tick()
    assert fast.world.tasks.get(task.task_id) is None
