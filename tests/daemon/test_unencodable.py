"""Issue 12, second line of defence: an answer, event, order or row that cannot be encoded
is its request's error, never the process's.

The strict codec keeps such values out at the edge (tests/daemon/test_strict_input.py), so
the test makes one the way an internal bug would: it corrupts a VM in the daemon's memory
(an alias with a lone surrogate, which no message can bring in any more). Before the fix,
the next answer that echoed it (or the idempotency row that stored it) raised in the commit
pipeline and stopped the daemon; the request, never acked, then came again after the
restart and stopped it again. Now that request is answered 500 `Internal error`,
dead-lettered with `x-vmd-error`, and the daemon answers the next request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aio_pika
import pytest
from support.amqp import message_count_settles

from vmd.bus.topology import COMMANDS_QUEUE, DEAD_QUEUE
from vmd.model import Reply

from .conftest import Cloud
from .harness import RawRequester

INTERNAL = Reply(500, {"detail": "Internal error"})


@pytest.mark.parametrize(
    "message_id",
    [
        pytest.param("m-bad", id="idempotency-row"),  # the stored record holds the answer
        pytest.param(None, id="reply"),  # nothing stored: the reply itself
    ],
)
async def test_an_answer_that_cannot_be_encoded_is_500_and_dead_lettered(
    cloud: Cloud, raw: Callable[..., Any], amqp_channel: aio_pika.abc.AbstractChannel,
    message_id: str | None,
) -> None:
    daemon = cloud.daemon
    requester: RawRequester = await raw("admin")
    # A good request decided in the same burst: its effect is stored (the turn goes on).
    good = await requester.send({"method": "PUT", "path": "/vm/web01.example.com/define",
                                 "data": {"ram": 4096}}, message_id="m-good")
    cloud.vm("web02.example.com").alias = "web\udfff"  # what only a bug could do
    bad = await requester.send({"method": "GET", "path": "/vm/web02.example.com/status"},
                               message_id=message_id)
    assert (await requester.replies_for(bad)) == [INTERNAL]
    assert (await requester.replies_for(good))[0].code == 200

    # Dead-lettered, with the reason; not in the commands queue any more.
    assert await message_count_settles(amqp_channel, DEAD_QUEUE, 1) == 1
    queue = await amqp_channel.get_queue(DEAD_QUEUE)
    dead = await queue.get(no_ack=True)
    assert dead is not None
    assert dead.correlation_id == bad
    assert str(dead.headers["x-vmd-error"]) == "internal error: the answer could not be encoded"
    assert await message_count_settles(amqp_channel, COMMANDS_QUEUE, 0) == 0
    assert daemon.metrics.internal_errors._value.get() == 1

    # The daemon goes on: the next request is answered, and the good one was stored.
    cid = await requester.send({"method": "GET", "path": "/vm/web01.example.com/status"})
    (after,) = await requester.replies_for(cid)
    assert after.code == 200
    assert daemon.running
    web01 = cloud.vm("web01.example.com").uuid
    stored = await daemon.pipeline.run_store(daemon.store.get_vm, web01)
    assert stored is not None and stored.pending_definition == {"ram": 4096}
    if message_id is not None:
        record = await daemon.pipeline.run_store(daemon.store.get_idempotency, "admin",
                                                 message_id, daemon.clock())
        assert record is None  # the bad answer never joined a batch


async def test_a_report_that_cannot_be_stored_is_dead_lettered(
    cloud: Cloud, amqp_channel: aio_pika.abc.AbstractChannel,
) -> None:
    """The same for an agent's report: the observation of a corrupted VM cannot be stored
    (its row holds the alias); the report is dead-lettered, the daemon goes on."""
    daemon = cloud.daemon
    vm = cloud.agent.vms[cloud.vm("web02.example.com").uuid]
    cloud.vm("web02.example.com").alias = "web\udfff"
    await cloud.agent.observe(vm, "running")
    assert await message_count_settles(amqp_channel, DEAD_QUEUE, 1) == 1
    assert daemon.metrics.internal_errors._value.get() == 1
    reply = await cloud.call("admin", "GET", "/vm/web01.example.com/status")
    assert reply.code == 200
    assert daemon.running
