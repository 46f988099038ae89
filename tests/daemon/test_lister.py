"""vmd.daemon.listing without the broker: what the Lister answers, slice by slice."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, cast

from vmd.bus import Delivery, codec
from vmd.daemon.listing import INTERNAL_ERROR, Lister
from vmd.fsm import FsmSettings, TaskBook, VmIndex, World, replies, task_id_factory
from vmd.model import Node, NodeName, NodeStatus, Principal, Reply, Vm, VmStatus, VmUuid

ADMIN = Principal("admin", admin=True)


@dataclass
class FakeDelivery:
    stale: bool = False
    correlation_id: str | None = "cid"


def world_of(n: int, alias: str = "a") -> World:
    vms = [Vm(uuid=VmUuid(f"00000000-0000-4000-8000-{i:012d}"), hostname=f"h{i:04d}",
              alias=alias, owner_uuid="o", node=NodeName("n1"), status=VmStatus.RUNNING)
           for i in range(n)]
    nodes = {NodeName("n1"): Node(NodeName("n1"), NodeStatus.ONLINE)}
    return World(VmIndex(vms), TaskBook(), nodes, FsmSettings(), task_id_factory(0))


async def build(world: World, data: dict[str, Any], delivery: FakeDelivery) -> list[Reply]:
    lister = Lister(world=world, slice_size=3, inline=1)
    answers: list[Reply] = []
    running = asyncio.create_task(lister.run())
    try:
        assert lister.takes(ADMIN)
        lister.submit(ADMIN, data, cast(Delivery, delivery), answers.append)
        await lister.join()
    finally:
        running.cancel()
    return answers


async def test_the_answer_is_the_encoded_list() -> None:
    (reply,) = await build(world_of(10), {"order_by": "-hostname"}, FakeDelivery())
    assert reply.code == 200
    wire = json.loads(codec.encode(reply.wire()))
    assert [o["hostname"] for o in wire["result"]] == [f"h{i:04d}" for i in range(9, -1, -1)]


async def test_a_bad_order_by_is_answered_at_once() -> None:
    (reply,) = await build(world_of(10), {"order_by": "hostname,hostname"}, FakeDelivery())
    assert reply == Reply(412, {"detail": replies.INVALID_ORDER_BY})


async def test_a_lost_request_is_not_answered() -> None:
    assert await build(world_of(10), {}, FakeDelivery(stale=True)) == []


async def test_a_value_json_cannot_hold_fails_this_answer_only() -> None:
    (reply,) = await build(world_of(10, alias="\ud800"), {}, FakeDelivery())
    assert reply is INTERNAL_ERROR and reply == Reply(500, {"detail": "Internal error"})
