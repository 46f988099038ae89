"""Clear JSON answers for everything that is not a normal round trip: malformed bodies,
unknown paths, wrong methods, oversized bodies, an unreachable broker, vmd not running or
not answering, and a broker user without the impersonator tag."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import aio_pika
import aiohttp
import pytest
from support.proxy import TcpProxy

from vmd.api import ApiService, StartError, check_impersonation
from vmd.bus import MAX_BODY, BusSettings
from vmd.bus.topology import COMMANDS_EXCHANGE
from vmd.config import ApiSettings

from .conftest import MakeGateway
from .helpers import ADMIN_KEY, ALICE_KEY, admin, alice, fetch
from .responder import VM, Responder


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param(b"{bad", "Malformed request: body is not JSON (Expecting property name "
                     "enclosed in double quotes at position 1)", id="not-json"),
        pytest.param(b"[1, 2]", "Malformed request: body is not a JSON object", id="list"),
        pytest.param(b'"force"', "Malformed request: body is not a JSON object", id="string"),
        pytest.param(b"\xff\xfe", "Malformed request: body is not UTF-8", id="not-utf8"),
        pytest.param(b'{"timeout": NaN}', "Malformed request: body is not JSON (NaN is not a "
                     "JSON value)", id="nan"),
    ],
)
async def test_malformed_json_body_is_400(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession,
        body: bytes, detail: str) -> None:
    gateway = await make_gateway()
    status, got, text = await fetch(http, "PUT", f"{gateway.url}/vm/{VM}/status/stop/",
                                    headers=admin(), data=body)
    assert (status, json.loads(text)) == (400, {"detail": detail})
    assert got["Content-Type"] == "application/json"
    assert responder.seen == []


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/api/vm/", id="vm"),
        pytest.param("/api/vm/web01/", id="vm-only"),
        pytest.param("/api/vm/web01/stats/", id="not-status"),
        pytest.param("/api/vm/web01/status/start/now/", id="too-deep"),
        pytest.param("/api/task/x/", id="task-no-status"),
        pytest.param("/api/node/status/", id="other-resource"),
        pytest.param("/api/vm/we%20b/status/", id="bad-vm-name"),
        pytest.param("/api", id="prefix-alone"),
        pytest.param("/apivm/status/", id="prefix-glued"),
        pytest.param("/vm/status/", id="no-prefix"),
        pytest.param("/", id="root"),
        pytest.param("/favicon.ico", id="favicon"),
    ],
)
async def test_unknown_path_is_404_json(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession,
        path: str) -> None:
    gateway = await make_gateway()
    base = gateway.url.removesuffix("/api")
    for headers in (admin(), {}):  # a path that does not exist is 404 for anyone
        status, got, text = await fetch(http, "GET", f"{base}{path}", headers=headers)
        assert (status, json.loads(text)) == (404, {"detail": "Not found"})
        assert got["Content-Type"] == "application/json"
    assert responder.seen == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("PUT", "/vm/status/", id="put-list"),
        pytest.param("POST", f"/vm/{VM}/status/start/", id="post-start"),
        pytest.param("DELETE", f"/vm/{VM}/status/", id="delete-vm"),
        pytest.param("PATCH", f"/vm/{VM}/status/current/", id="patch-current"),
        pytest.param("PUT", "/task/0-a2327793-2600-423d-9f07/status/", id="put-task"),
        pytest.param("OPTIONS", "/vm/status/", id="options"),
        pytest.param("GET", f"/vm/{VM}/define/", id="get-define"),
    ],
)
async def test_wrong_method_is_405_json(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession,
        method: str, path: str) -> None:
    gateway = await make_gateway()
    status, got, text = await fetch(http, method, f"{gateway.url}{path}", headers=admin())
    assert (status, json.loads(text)) == (405, {"detail": f'Method "{method}" not allowed.'})
    assert got["Content-Type"] == "application/json"
    assert responder.seen == []


@pytest.mark.parametrize(
    ("size", "chunked"),
    [
        pytest.param(MAX_BODY + 1, False, id="content-length"),
        pytest.param(MAX_BODY + 1, True, id="chunked"),
        pytest.param(1024 * 1024, False, id="one-mib"),
    ],
)
async def test_body_over_64_kib_is_413_json(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession,
        size: int, chunked: bool) -> None:
    gateway = await make_gateway()
    body = b'{"x": "' + b"a" * (size - 9) + b'"}'
    assert len(body) == size

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 8192):
            yield body[i:i + 8192]

    status, got, text = await fetch(http, "PUT", f"{gateway.url}/vm/{VM}/status/stop/",
                                    headers=admin(), data=chunks() if chunked else body)
    assert status == 413
    assert json.loads(text)["detail"].endswith(f"the limit is {MAX_BODY} bytes")
    assert got["Content-Type"] == "application/json"
    assert responder.seen == []


async def test_a_body_that_fits_but_whose_request_does_not_is_413(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession) -> None:
    gateway = await make_gateway()
    body = b'{"x": "' + b"a" * (MAX_BODY - 20) + b'"}'  # under 64 KiB; with method and path over
    status, _, text = await fetch(http, "PUT", f"{gateway.url}/vm/{VM}/status/stop/",
                                  headers=admin(), data=body)
    assert status == 413
    assert "limit is 65536 bytes" in json.loads(text)["detail"]
    assert responder.seen == []


async def test_no_answer_is_504(make_gateway: MakeGateway, responder: Responder,
                                http: aiohttp.ClientSession) -> None:
    gateway = await make_gateway(timeout=0.5)
    for stream in ({}, {"ES-STREAM": "es"}):
        status, got, text = await fetch(http, "PUT", f"{gateway.url}/vm/silent/status/start/",
                                        headers=admin(**stream))
        assert (status, json.loads(text)) == (
            504, {"detail": "Gateway timeout: no answer from vmd within 0.5s"})
        assert got["Content-Type"] == "application/json"
    assert [s.path for s in responder.seen] == ["/vm/silent/status/start"] * 2
    assert gateway.client._pending == {}


async def test_broker_unreachable_is_503(
        amqp_proxy: TcpProxy, make_gateway: MakeGateway, responder: Responder,
        http: aiohttp.ClientSession, amqp_clean: str) -> None:
    gateway = await make_gateway(url=amqp_proxy.url("vmd-api", "vmd-api", amqp_clean),
                                 timeout=0.5)
    status, _, _ = await fetch(http, "GET", f"{gateway.url}/vm/status/", headers=admin())
    assert status == 200
    amqp_proxy.block()
    status, got, text = await fetch(http, "GET", f"{gateway.url}/vm/status/", headers=admin())
    assert (status, json.loads(text)) == (
        503, {"detail": "Service unavailable: the message broker is unreachable"})
    assert got["Content-Type"] == "application/json"
    amqp_proxy.unblock()
    for _ in range(100):  # the link reconnects on its own
        status, _, _ = await fetch(http, "GET", f"{gateway.url}/vm/status/", headers=admin())
        if status == 200:
            break
    assert status == 200


async def test_vmd_not_running_is_503(
        make_gateway: MakeGateway, http: aiohttp.ClientSession,
        amqp_channel: aio_pika.abc.AbstractChannel) -> None:
    gateway = await make_gateway(check_impersonation=False)
    expected = (503, {"detail": "Service unavailable: vmd is not running"})
    # No exchange at all (vmd never ran on this vhost) ...
    status, _, text = await fetch(http, "GET", f"{gateway.url}/vm/status/", headers=admin())
    assert (status, json.loads(text)) == expected
    # ... then the exchange without its queue.
    await amqp_channel.declare_exchange(COMMANDS_EXCHANGE, "direct", durable=True)
    status, _, text = await fetch(http, "GET", f"{gateway.url}/vm/status/", headers=admin())
    assert (status, json.loads(text)) == expected


async def test_impersonation_check(responder: Responder,
                                   bus_settings: Callable[..., BusSettings]) -> None:
    refused = await check_impersonation(bus_settings("vmd"), frozenset({"vmd", "alice"}))
    assert refused == (
        "the broker refuses to let user 'vmd' publish on behalf of 'alice': give the gateway's "
        "own broker user (and no other) the impersonator tag: rabbitmqctl set_user_tags vmd "
        "impersonator (docs/api.md)")
    assert await check_impersonation(bus_settings("vmd-api"), frozenset({"alice"})) is None
    # Nobody to impersonate: nothing to check.
    assert await check_impersonation(bus_settings("vmd"), frozenset({"vmd"})) is None
    # The probe reached no queue: vmd saw nothing.
    assert responder.seen == []


async def test_a_gateway_user_without_the_impersonator_tag_does_not_start(
        responder: Responder, bus_settings: Callable[..., BusSettings]) -> None:
    settings = bus_settings("vmd")
    service = ApiService(ApiSettings(broker_url=settings.url, listen="127.0.0.1:0",
                                     keys={ADMIN_KEY: "admin"}), bus=settings)
    with pytest.raises(StartError, match="impersonator tag") as info:
        await service.start()
    assert info.value.exit_code == 2
    assert "'vmd' publish on behalf of 'admin'" in str(info.value)
    assert service.port == 0  # it never listened


async def test_impersonation_refused_per_request_is_a_clear_502(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession) -> None:
    own_key = "vmd-key-0123456789abcdef"
    gateway = await make_gateway(user="vmd", check_impersonation=False,
                                 keys={ALICE_KEY: "alice", own_key: "vmd"})
    status, got, text = await fetch(http, "GET", f"{gateway.url}/vm/status/", headers=alice())
    assert status == 502
    assert json.loads(text) == {"detail": (
        "Bad gateway: the message broker refused a request on behalf of 'alice': the "
        "gateway's broker user 'vmd' lacks the impersonator tag (docs/api.md)")}
    assert got["Content-Type"] == "application/json"
    assert responder.seen == []
    # The connection the broker closed is rebuilt: the gateway's own principal still works.
    status, _, _ = await fetch(http, "GET", f"{gateway.url}/vm/status/",
                               headers={"ES-API-KEY": own_key})
    assert status == 200
    assert [s.user_id for s in responder.seen] == ["vmd"]


async def test_a_reply_lost_with_the_connection_is_asked_again_with_the_same_message_id(
        amqp_proxy: TcpProxy, make_gateway: MakeGateway, responder: Responder,
        http: aiohttp.ClientSession, amqp_clean: str) -> None:
    gateway = await make_gateway(url=amqp_proxy.url("vmd-api", "vmd-api", amqp_clean))
    # `lazy` answers after 0.5 s: the connection is cut while the gateway waits.
    request = asyncio.create_task(fetch(http, "GET", f"{gateway.url}/vm/lazy/status/",
                                        headers=admin()))
    while not responder.seen:
        await asyncio.sleep(0.01)
    assert amqp_proxy.cut() == 1
    status, _, text = await request
    assert status == 200
    assert json.loads(text)["result"]["hostname"] == "lazy"
    first, again = responder.seen
    assert first.message_id == again.message_id  # vmd answers a repeat with its first answer
    assert (first.path, again.path) == ("/vm/lazy/status",) * 2
    assert gateway.client.reconnects == 1
