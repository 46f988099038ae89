"""protocol.md §5 idempotency on the daemon's parts (behaviour tested on the broker before,
in tests/daemon/test_idempotency_owners.py and _cold.py, which keep what needs the bus
client or a real restart): a repeat is answered with the first answer and not executed, in
stream mode with the final reply too; records cool on the clock and are answered from the
store; they and the state survive a restart; a task keeps at most `MAX_STREAMS` stream
subscribers (found by the fault suite, docs/reliability.md). "Not sent again" is read off
the bus's record: nothing to wait for."""

from __future__ import annotations

from support.fastdaemon import FastDaemon

from vmd.model import Reply, VmStatus

from .conftest import MakeFast

START = "/vm/web02.example.com/status/start"
# Stream subscribers a task keeps (docs/reliability.md: at most 8, the newest).
MAX_STREAMS = 8


async def test_same_message_id_twice_is_executed_once(fast: FastDaemon) -> None:
    first = await fast.call("alice", "PUT", START, message_id="start-web02")
    second = await fast.call("alice", "PUT", START, message_id="start-web02")
    assert first.code == 201
    assert second == first  # the first answer again, same task_id
    (task,) = fast.tasks()  # sent once
    assert task.task_id == first.body["task_id"]
    assert fast.metrics.idempotent_replays._value.get() == 1
    # A different principal with the same message_id is another request.
    other = await fast.call("admin", "PUT", START, message_id="start-web02")
    assert other == Reply(423, {"detail": "VM is already starting"})


async def test_a_redelivery_without_message_id_is_answered_from_the_memo(
        fast: FastDaemon) -> None:
    first = await fast.send(fast.bus.request("alice", "PUT", START, correlation_id="c-1"))
    again = await fast.send(fast.bus.request("alice", "PUT", START, correlation_id="c-1",
                                             redelivered=True))
    (reply,) = fast.bus.replies("c-1")[:1]
    assert reply.code == 201
    assert fast.bus.replies("c-1") == [reply, reply]
    assert len(fast.tasks()) == 1
    assert (fast.bus.settled(first).how, fast.bus.settled(again).how) == ("ack", "ack")


async def test_stream_retry_gets_the_final_reply(fast: FastDaemon) -> None:
    # A retry while the task runs is subscribed to its end as well.
    first = await fast.send(fast.bus.request("alice", "PUT", START, message_id="s1",
                                             stream=True))
    (task,) = fast.tasks()
    second = await fast.send(fast.bus.request("alice", "PUT", START, message_id="s1",
                                              stream=True))
    await fast.result(task)
    got = [*fast.bus.replies(first.correlation_id or ""),
           *fast.bus.replies(second.correlation_id or "")]
    assert [r.code for r in got] == [201, 200, 201, 200]
    assert {r.body["task_id"] for r in got} == {task.task_id}
    # After the end, a retry gets both answers at once.
    third = await fast.send(fast.bus.request("alice", "PUT", START, message_id="s1",
                                             stream=True))
    late = fast.bus.replies(third.correlation_id or "")
    assert [r.code for r in late] == [201, 200]
    assert late[1].body["result"]["message"] == "Successfully started VM web02.example.com"
    assert len(fast.tasks()) == 1


async def test_repeats_of_a_stream_request_keep_a_bounded_list(fast: FastDaemon) -> None:
    first = await fast.send(fast.bus.request("alice", "PUT", START, message_id="bounded-1",
                                             stream=True))
    (task,) = fast.tasks()
    repeats = [await fast.send(fast.bus.request("alice", "PUT", START, message_id="bounded-1",
                                                stream=True)) for _ in range(20)]
    cids = [r.correlation_id for r in repeats]
    assert [len(fast.bus.replies(cid or "")) for cid in cids] == [1] * 20  # each its 201
    await fast.result(task)
    for cid in cids[-MAX_STREAMS:]:
        assert [r.code for r in fast.bus.replies(cid or "")] == [201, 200]
    # The ones that gave way got their first answer only: nothing more is on its way, the
    # turn that ended the task is published and nothing is pending.
    others = [first.correlation_id, *cids[:-MAX_STREAMS]]
    assert [len(fast.bus.replies(cid or "")) for cid in others] == [1] * 13


async def test_a_cooled_record_is_answered_from_the_store_and_not_run(
        make_fast: MakeFast) -> None:
    fast = await make_fast(opts={"idempotency_hot_seconds": 60.0})
    await fast.seed()
    first = await fast.call("alice", "PUT", START, message_id="late-1")
    (task,) = fast.tasks()
    key = ("alice", "late-1")
    fast.clock.advance(120.0)
    await fast.tick()
    # Its task is pending: the record stays hot (its final reply may still be added).
    assert key in fast.core.idempotency and key not in fast.core.cold
    await fast.result(task)
    await fast.tick()
    assert key in fast.core.cold and key not in fast.core.idempotency
    again = await fast.call("alice", "PUT", START, message_id="late-1")
    assert again == first  # the same 201, read from the store
    assert len(fast.tasks()) == 1  # nothing sent to the node again
    # Another message_id is a new request: the VM runs now.
    assert await fast.call("alice", "PUT", START, message_id="late-2") == Reply(
        417, {"detail": "Bad action"})


async def test_keys_and_state_survive_a_restart(fast: FastDaemon) -> None:
    frozen = await fast.call("admin", "PUT", "/vm/web02.example.com/status/stop",
                             {"freeze": True}, message_id="freeze-1")
    started = await fast.call("alice", "PUT", "/vm/zone01.example.com/status/start",
                              message_id="start-zone01")
    (task,) = fast.tasks()
    await fast.restart()
    assert fast.vm("web02.example.com").status is VmStatus.FROZEN
    zone01 = fast.vm("zone01.example.com")
    assert zone01.status is VmStatus.STARTING and zone01.task_id == task.task_id
    assert await fast.call("admin", "PUT", "/vm/web02.example.com/status/stop",
                           {"freeze": True}, message_id="freeze-1") == frozen
    assert await fast.call("alice", "PUT", "/vm/zone01.example.com/status/start",
                           message_id="start-zone01") == started
    # The restored task still completes, once.
    await fast.heartbeat()
    await fast.result(task)
    (done,) = fast.bus.tasks_done(task.task_id)
    assert done["status"] == "SUCCESS"
    assert zone01.status is VmStatus.RUNNING


async def test_records_per_principal_are_capped_oldest_first(make_fast: MakeFast) -> None:
    fast = await make_fast(max_idempotency_records=2)
    await fast.seed()
    path = "/vm/web01.example.com/status"
    # Recorded kinds only: define (admin) is one; three of them, the first is evicted.
    for n in range(3):
        await fast.call("admin", "PUT", "/vm/web02.example.com/define", {"ram": 1024 + n},
                        message_id=f"def-{n}")
    assert fast.core.records_of("admin") == 2
    assert ("admin", "def-0") not in fast.core.idempotency
    assert fast.metrics.idempotency_evicted._value.get() == 1
    # Pure reads are not recorded at all.
    await fast.call("admin", "GET", path, message_id="read-1")
    assert fast.core.records_of("admin") == 2


async def test_a_stream_subscriber_gets_its_final_reply_after_a_restart(
        fast: FastDaemon) -> None:
    request = await fast.send(fast.bus.request("alice", "PUT", START, message_id="s-restart",
                                               stream=True))
    cid = request.correlation_id or ""
    (task,) = fast.tasks()
    await fast.restart()  # the subscriber is stored with its pending task
    await fast.heartbeat()
    await fast.result(task)
    (final,) = fast.bus.replies(cid)  # this process's bus: the final reply only
    assert (final.code, final.body["task_id"]) == (200, task.task_id)
    # A retry now gets both answers at once, from the record the final reply completed.
    again = await fast.send(fast.bus.request("alice", "PUT", START, message_id="s-restart",
                                             stream=True))
    assert [r.code for r in fast.bus.replies(again.correlation_id or "")] == [201, 200]
