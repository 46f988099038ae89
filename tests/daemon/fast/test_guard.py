"""No single message may stop the daemon (issue 12), on the daemon's parts without the
broker: an answer or a row that cannot be encoded is its request's 500 and dead-lettering
while the rest of the turn is committed; a message that kills the process each time it is
in hand is dead-lettered past the delivery limit, counted per process start, not per
redelivery; the redelivery memo keeps only requests that may change something. The broker
tests (tests/daemon/test_unencodable.py, test_poison_guard.py, test_delivery_limit.py,
test_memo_reads.py) keep the real `vmd.dead` copy, the real requeue and a real kill."""

from __future__ import annotations

import pytest
from support.fastdaemon import FastDaemon

from vmd.bus import Delivery
from vmd.daemon.poison import REDELIVERY_LIMIT
from vmd.model import Reply

INTERNAL = Reply(500, {"detail": "Internal error"})
UNENCODABLE = "internal error: the answer could not be encoded"


@pytest.mark.parametrize(
    "message_id",
    [
        pytest.param("m-bad", id="idempotency-row"),  # the stored record holds the answer
        pytest.param(None, id="reply"),  # nothing stored: the reply itself
    ],
)
async def test_an_answer_that_cannot_be_encoded_is_500_and_dead_lettered(
        fast: FastDaemon, message_id: str | None) -> None:
    # A good request decided in the same turn: its effect is stored (the turn goes on).
    good = fast.bus.request("admin", "PUT", "/vm/web01.example.com/define", {"ram": 4096},
                            message_id="m-good")
    await fast.on_command(good)
    fast.vm("web02.example.com").alias = "web\udfff"  # what only a bug could do
    bad = fast.bus.request("admin", "GET", "/vm/web02.example.com/status",
                           message_id=message_id)
    await fast.on_command(bad)
    await fast.idle()
    assert fast.bus.replies(bad.correlation_id or "") == [INTERNAL]
    assert fast.bus.replies(good.correlation_id or "")[0].code == 200
    assert (fast.bus.settled(bad).how, fast.bus.settled(bad).reason) == ("dead", UNENCODABLE)
    assert fast.bus.settled(good).how == "ack"
    assert fast.metrics.internal_errors._value.get() == 1
    # The daemon goes on, and the good one was stored.
    assert (await fast.call("admin", "GET", "/vm/web01.example.com/status")).code == 200
    stored = fast.store.get_vm(fast.vm("web01.example.com").uuid)
    assert stored is not None and stored.pending_definition == {"ram": 4096}
    if message_id is not None:  # the bad answer never joined a batch
        assert fast.store.get_idempotency("admin", message_id, fast.clock()) is None


async def test_a_report_that_cannot_be_stored_is_dead_lettered(fast: FastDaemon) -> None:
    fast.vm("web02.example.com").alias = "web\udfff"
    fast.bus.take()
    await fast.observe("node1", fast.fleet["web02.example.com"], "running")
    ((delivery, reason),) = fast.bus.dead
    assert delivery.queue == "vmd.agent.reports" and reason == UNENCODABLE
    assert fast.metrics.internal_errors._value.get() == 1
    assert (await fast.call("admin", "GET", "/vm/web01.example.com/status")).code == 200


def _poison(fast: FastDaemon, redelivered: bool = True) -> Delivery:
    # The same message each time: same queue, sender, ids and body.
    return fast.bus.request("alice", "GET", "/vm/web01.example.com/status",
                            correlation_id="poison", message_id="p-1", redelivered=redelivered)


async def test_past_the_delivery_limit_of_process_starts_it_is_dead_lettered(
        fast: FastDaemon) -> None:
    await fast.send(_poison(fast, redelivered=False))  # in hand when the process died
    for _ in range(REDELIVERY_LIMIT):
        await fast.restart()
        again = await fast.send(_poison(fast))
        assert fast.bus.replies("poison")[0].code == 200  # handled: within the limit
        assert fast.bus.settled(again).how == "ack"
    await fast.restart()
    last = await fast.send(_poison(fast))
    assert fast.bus.replies("poison") == [INTERNAL]
    settled = fast.bus.settled(last)
    assert settled.how == "dead"
    assert settled.reason == (f"delivery limit exceeded (redelivered {REDELIVERY_LIMIT + 1} "
                              f"times, limit {REDELIVERY_LIMIT})")
    assert fast.metrics.delivery_limit_exceeded._value.get() == 1


async def test_redeliveries_within_one_process_are_counted_once(fast: FastDaemon) -> None:
    for _ in range(REDELIVERY_LIMIT + 3):  # a flapping connection brings it back each time
        delivery = await fast.send(_poison(fast))
        assert fast.bus.settled(delivery).how == "ack"
    assert [r.code for r in fast.bus.replies("poison")] == [200] * (REDELIVERY_LIMIT + 3)
    assert fast.metrics.delivery_limit_exceeded._value.get() == 0


async def test_reads_without_message_id_are_not_remembered(fast: FastDaemon) -> None:
    requests = [fast.bus.request("alice", method, path) for method, path in [
        ("GET", "/vm/status"), ("GET", "/vm/web01.example.com/status"),
        ("GET", "/vm/nothere/status"), ("PUT", "/vm/web02.example.com/status/start")]]
    for request in requests:
        await fast.send(request)
    assert fast.bus.replies(requests[-1].correlation_id or "")[0].code == 201
    memo = fast.intake._memo._answers
    assert [key[1] for key in memo] == [requests[-1].correlation_id]
