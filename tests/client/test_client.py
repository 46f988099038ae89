"""`vmd.client.Client` against the stand-in responder on the real broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from support.proxy import TcpProxy

from vmd.client import BusSettings, Client, ConnectionLost, ReplyLost, Unroutable, Waiting
from vmd.model import Reply

from .responder import VMS, Responder

MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def make_client(
    bus_settings: Callable[..., BusSettings],
) -> AsyncIterator[MakeClient]:
    """`await make_client(user="alice", url=None, timeout=5.0)`: a connected `Client`."""
    opened: list[Client] = []

    async def make(user: str = "alice", url: str | None = None, **kw: Any) -> Client:
        client = Client(bus_settings(user, url=url), timeout=kw.pop("timeout", 5.0), **kw)
        opened.append(client)
        await client.connect()
        return client

    yield make
    for client in reversed(opened):
        await client.close()


Call = Callable[[Client], Awaitable[Reply]]


@pytest.mark.parametrize(
    ("call", "method", "path", "data"),
    [
        pytest.param(lambda c: c.status_list(), "GET", "/vm/status", {}, id="list"),
        pytest.param(lambda c: c.status_list("-hostname"), "GET", "/vm/status",
                     {"order_by": "-hostname"}, id="list-order-by-string"),
        pytest.param(lambda c: c.status_list(["-status", "hostname"]), "GET", "/vm/status",
                     {"order_by": "-status,hostname"}, id="list-order-by-list"),
        pytest.param(lambda c: c.status("web01.example.com"), "GET",
                     "/vm/web01.example.com/status", {}, id="status"),
        pytest.param(lambda c: c.current("web01"), "GET", "/vm/web01/status/current", {},
                     id="current"),
        pytest.param(lambda c: c.resync("web01"), "PUT", "/vm/web01/status/current", {},
                     id="resync"),
        pytest.param(lambda c: c.resync("web01", force=True), "PUT",
                     "/vm/web01/status/current", {"force": True}, id="resync-force"),
        pytest.param(lambda c: c.start("web01", cdimage="rescue.iso", cdimage_once=False),
                     "PUT", "/vm/web01/status/start",
                     {"cdimage": "rescue.iso", "cdimage_once": False}, id="start"),
        pytest.param(lambda c: c.stop("web01", force=True, timeout=60), "PUT",
                     "/vm/web01/status/stop", {"force": True, "timeout": 60}, id="stop"),
        pytest.param(lambda c: c.reboot("web01"), "PUT", "/vm/web01/status/reboot", {},
                     id="reboot"),
        pytest.param(lambda c: c.define("web01", {"ram": 2048}), "PUT", "/vm/web01/define",
                     {"ram": 2048}, id="define"),
        pytest.param(lambda c: c.task_status("0-abc"), "GET", "/task/0-abc/status", {},
                     id="task-status"),
        pytest.param(lambda c: c.request("put", "/vm/w/status/stop", {"freeze": True}), "PUT",
                     "/vm/w/status/stop", {"freeze": True}, id="request-method-upper-cased"),
    ],
)
async def test_methods_send_the_protocol_requests(
    responder: Responder, make_client: MakeClient, call: Call, method: str, path: str,
    data: dict[str, Any],
) -> None:
    client = await make_client("alice")
    reply = await call(client)
    [seen] = responder.seen
    assert seen.body == {"method": method, "path": path, "data": data}
    assert seen.user_id == "alice"  # the URL's user is the principal
    assert seen.message_id  # every request carries an idempotency key
    assert not seen.stream  # wait=False: no stream header
    assert isinstance(reply, Reply) and reply.code in (200, 201, 404)


async def test_replies_are_code_and_body(responder: Responder, make_client: MakeClient) -> None:
    client = await make_client()
    listed = await client.status_list()
    assert listed.code == 200
    assert listed.body["result"] == VMS
    assert "code" not in listed.body
    missing = await client.status("nowhere")
    assert missing == Reply(404, {"detail": "VM not found"})
    pending = await client.stop("web01")
    assert pending.code == 201 and pending.body["status"] == "PENDING"
    assert pending.body["task_id"].startswith("0-")


async def test_fresh_message_ids_unless_given(
    responder: Responder, make_client: MakeClient
) -> None:
    client = await make_client()
    await client.status_list()
    await client.status_list()
    await client.request("GET", "/vm/status", message_id="mine-1")
    ids = [s.message_id for s in responder.seen]
    assert ids[0] != ids[1]
    assert ids[2] == "mine-1"


async def test_a_repeated_message_id_gets_the_first_answer(
    responder: Responder, make_client: MakeClient
) -> None:
    client = await make_client()
    first = await client.stop("web01", message_id="stop-web01-1")
    again = await client.stop("web01", message_id="stop-web01-1")
    assert again == first
    assert responder.executed == 1


@pytest.mark.parametrize("vm", ["", "a/b"])
async def test_a_vm_that_is_not_a_path_segment_is_refused(
    responder: Responder, make_client: MakeClient, vm: str
) -> None:
    client = await make_client()
    with pytest.raises(ValueError, match="not a valid VM"):
        await client.status(vm)
    assert responder.seen == []


async def test_wait_returns_the_final_reply_with_progress(
    responder: Responder, make_client: MakeClient
) -> None:
    responder.task_seconds = 2.5
    client = await make_client()
    ticks: list[Waiting] = []
    reply = await client.start("web01", wait=True, progress=ticks.append)
    assert reply.code == 200
    assert reply.body["status"] == "SUCCESS"
    assert reply.body["result"]["message"] == "Successfully completed start for VM web01"
    [seen] = responder.seen
    assert seen.stream  # stream mode: header stream true
    # Tick 0 when the 201 arrived, then at least the tick at 1 s.
    assert [t.tick for t in ticks][:2] == [0, 1]
    assert ticks[0].elapsed == 0.0 and ticks[0].pending.code == 201
    assert ticks[0].task_id == reply.body["task_id"]
    assert ticks[1].elapsed >= 1.0
    count = len(ticks)
    await asyncio.sleep(1.2)
    assert len(ticks) == count  # no tick after the end


async def test_wait_on_an_immediate_answer_returns_it(
    responder: Responder, make_client: MakeClient
) -> None:
    client = await make_client()
    ticks: list[Waiting] = []
    reply = await client.request("GET", "/vm/missing/status/stop", wait=True,
                                 progress=ticks.append)
    assert reply == Reply(404, {"detail": "VM not found"})
    assert ticks == []


async def test_wait_for_a_failing_task(responder: Responder, make_client: MakeClient) -> None:
    responder.task_seconds = 0.2
    client = await make_client()
    reply = await client.stop("broken", wait=True)
    assert reply.code == 400
    assert reply.body["status"] == "FAILURE"


async def test_wait_task_polls_a_task_already_created(
    responder: Responder, make_client: MakeClient
) -> None:
    responder.task_seconds = 1.5
    client = await make_client()
    pending = await client.reboot("web01")
    ticks: list[Waiting] = []
    final = await client.wait_task(pending.body["task_id"], progress=ticks.append)
    assert final.code == 200
    assert final.body["task_id"] == pending.body["task_id"]
    assert ticks and ticks[0].tick == 0
    assert len(responder.requests("GET", f"/task/{pending.body['task_id']}/status")) >= 2


async def test_no_vmd_is_a_clear_error(make_client: MakeClient, amqp_channel: Any) -> None:
    # The exchange exists but no queue is bound: vmd never ran on this vhost.
    await amqp_channel.declare_exchange("vmd.commands", "direct", durable=True)
    client = await make_client()
    with pytest.raises(Unroutable):
        await client.status_list()


# -- lost replies: the connection is cut through the proxy while the client waits -----------


async def _proxied(make_client: MakeClient, proxy: TcpProxy, vhost: str) -> Client:
    return await make_client("alice", url=proxy.url("alice", "alice", vhost))


async def _cut_when_lost(responder: Responder, proxy: TcpProxy, times: int) -> None:
    for _ in range(times):
        await responder.lost.get()
        assert proxy.cut() >= 1


async def test_lost_reply_is_asked_again_with_the_same_message_id(
    amqp_proxy: TcpProxy, responder: Responder, make_client: MakeClient, amqp_vhost: str
) -> None:
    client = await _proxied(make_client, amqp_proxy, amqp_vhost)
    responder.lose_replies = 1
    cutter = asyncio.create_task(_cut_when_lost(responder, amqp_proxy, 1))
    reply = await client.stop("web01", force=True)
    await cutter
    assert reply.code == 201
    first, repeat = responder.seen
    assert repeat.repeat and repeat.message_id == first.message_id
    assert responder.executed == 1  # executed once, answered twice
    assert client.retries == 1
    assert client.reconnects == 1


async def test_lost_reply_is_retried_only_once(
    amqp_proxy: TcpProxy, responder: Responder, make_client: MakeClient, amqp_vhost: str
) -> None:
    client = await _proxied(make_client, amqp_proxy, amqp_vhost)
    responder.lose_replies = 2  # the answer and the repeat's answer
    cutter = asyncio.create_task(_cut_when_lost(responder, amqp_proxy, 2))
    # ReplyLost, or ConnectionLost when the cut also beat the publish confirm.
    with pytest.raises((ReplyLost, ConnectionLost)):
        await client.status_list()
    await cutter
    first, repeat = responder.seen
    assert repeat.message_id == first.message_id
    assert client.retries == 1


async def test_lost_final_reply_is_learned_by_polling(
    amqp_proxy: TcpProxy, responder: Responder, make_client: MakeClient, amqp_vhost: str
) -> None:
    responder.task_seconds = 1.0
    client = await _proxied(make_client, amqp_proxy, amqp_vhost)
    ticks: list[Waiting] = []

    def progress(waiting: Waiting) -> None:
        ticks.append(waiting)
        if waiting.tick == 0:  # the 201 is in: the final reply will be lost
            amqp_proxy.cut()

    reply = await client.start("web01", wait=True, progress=progress)
    assert reply.code == 200
    task_id = reply.body["task_id"]
    assert ticks[0].task_id == task_id
    assert responder.executed >= 2  # the start, then polls of the task
    assert len(responder.requests("PUT")) == 1  # the start was not sent again
    polls = responder.requests("GET", f"/task/{task_id}/status")
    assert polls and len({p.message_id for p in polls}) == len(polls)  # fresh ids per poll
    assert client.retries == 1


async def test_lost_first_reply_in_stream_mode_is_asked_again_then_polled(
    amqp_proxy: TcpProxy, responder: Responder, make_client: MakeClient, amqp_vhost: str
) -> None:
    responder.task_seconds = 0.5
    responder.lose_replies = 1
    client = await _proxied(make_client, amqp_proxy, amqp_vhost)
    cutter = asyncio.create_task(_cut_when_lost(responder, amqp_proxy, 1))
    ticks: list[Waiting] = []
    reply = await client.stop("web01", wait=True, progress=ticks.append)
    await cutter
    assert reply.code == 200
    first, repeat = responder.requests("PUT")
    assert first.stream and repeat.repeat and repeat.message_id == first.message_id
    assert responder.requests("GET", f"/task/{reply.body['task_id']}/status")
    assert ticks[0].task_id == reply.body["task_id"]
    assert client.retries == 1
