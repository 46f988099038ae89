"""Issue 12, findings 3 and 6, through the real broker: an owner cannot stall the daemon's
loop with `order_by`; a big list is built in slices while other requests are answered;
a hostname two owners' VMs share resolves for each of them (409 for an admin)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import pytest

from vmd.fsm import replies
from vmd.model import Reply

from .conftest import Cloud
from .harness import BOB_OWNER, RawRequester, eventually, vm_uuid


class OrderedRequester(RawRequester):
    """A RawRequester that also keeps the order the replies arrived in."""

    arrivals: list[str]

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.arrivals.append(message.correlation_id or "")
        await super()._on_reply(message)


@pytest.fixture
async def requester(
    amqp_url_for: Callable[[str], str],
) -> AsyncIterator[Callable[[str], Awaitable[OrderedRequester]]]:
    opened: list[OrderedRequester] = []

    async def make(user: str) -> OrderedRequester:
        ordered = OrderedRequester(amqp_url_for(user), user)
        ordered.arrivals = []
        opened.append(ordered)
        await ordered.start()
        return ordered

    yield make
    for ordered in opened:
        await ordered.close()


Make = Callable[[str], Awaitable[OrderedRequester]]


async def test_thousands_of_order_by_items_are_412(cloud: Cloud, requester: Make) -> None:
    alice = await requester("alice")
    # 63 KB: under the 64 KiB limit. Each item cost a sort of the list (issue 12).
    hostile = {"method": "GET", "path": "/vm/status",
               "data": {"order_by": ",".join(["hostname"] * 7000)}}
    sent = await asyncio.gather(*(alice.send(hostile) for _ in range(40)))
    probe = await alice.send({"method": "GET", "path": "/vm/web01.example.com/status"})
    for cid in sent:
        (reply,) = await alice.replies_for(cid)
        assert reply == Reply(412, {"detail": replies.INVALID_ORDER_BY})
    (answer,) = await alice.replies_for(probe)
    assert answer.code == 200 and answer.body["result"]["hostname"] == "web01.example.com"
    ok = await cloud.call("alice", "GET", "/vm/status",
                          {"order_by": "-status,alias,-status_change,uuid,hostname"})
    assert ok.code == 200


async def test_a_big_list_is_built_while_others_are_answered(
    cloud: Cloud, requester: Make,
) -> None:
    for n in range(100, 400):
        cloud.agent.add(n, f"bulk{n:03d}.example.com")
    await cloud.agent.full_sync()
    await eventually(lambda: len(cloud.daemon.world.vms) >= 305, what="the bulk VMs")
    lister = cloud.daemon.intake.lister
    expected = await cloud.call("admin", "GET", "/vm/status", {"order_by": "-hostname"})
    assert lister.built == 0  # 305 VMs: rendered in the request's own step
    # Every list counts as big, one VM per slice: the list takes ~300 loop turns.
    lister._inline, lister._slice = 1, 1
    admin = await requester("admin")
    listing = admin.send({"method": "GET", "path": "/vm/status",
                          "data": {"order_by": "-hostname"}})
    gets = [admin.send({"method": "GET", "path": f"/vm/bulk{n:03d}.example.com/status"})
            for n in range(100, 120)]
    cids = await asyncio.gather(listing, *gets)
    (reply,) = await admin.replies_for(cids[0])
    for cid in cids[1:]:
        (answer,) = await admin.replies_for(cid)
        assert answer.code == 200
    assert lister.built == 1
    assert reply.code == 200 and reply.body["result"] == expected.body["result"]
    # The GETs sent after the list were answered while it was being built.
    assert admin.arrivals.index(cids[1]) < admin.arrivals.index(cids[0])


async def test_a_hostname_two_owners_share(cloud: Cloud) -> None:
    shared = "shared.example.com"
    mine = cloud.agent.add(10, shared)
    theirs = cloud.agent.add(11, shared, owner=BOB_OWNER)
    await cloud.agent.full_sync()
    await eventually(lambda: len(cloud.daemon.world.vms.named(shared)) == 2, what="both")
    for user, vm in (("alice", mine), ("bob", theirs)):
        reply = await cloud.call(user, "GET", f"/vm/{shared}/status")
        assert reply.code == 200 and reply.body["result"]["uuid"] == vm.uuid
    reply = await cloud.call("admin", "GET", f"/vm/{shared}/status")
    first, second = sorted((vm_uuid(10), vm_uuid(11)))
    assert reply == Reply(409, {"detail": f"Hostname {shared} is shared by 2 VMs "
                                          f"({first}, {second}); use the VM's uuid"})
    # Renamed on its node: the other one is the hostname's only VM again, for everyone.
    theirs.hostname = "renamed.example.com"
    await cloud.agent.observe(theirs, None)
    await eventually(lambda: len(cloud.daemon.world.vms.named(shared)) == 1, what="rename")
    for user in ("alice", "admin"):
        reply = await cloud.call(user, "GET", f"/vm/{shared}/status")
        assert reply.code == 200 and reply.body["result"]["uuid"] == mine.uuid
    reply = await cloud.call("bob", "GET", "/vm/renamed.example.com/status")
    assert reply.code == 200 and reply.body["result"]["uuid"] == theirs.uuid
