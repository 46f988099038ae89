"""Every endpoint of the seed through HTTP: with and without the trailing `/`, with and
without `ES-STREAM` (`es` and another value); what reaches the broker; data mapping."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from .conftest import MakeGateway
from .helpers import ADMIN_KEY, ALICE_KEY, admin, fetch, split_stream
from .responder import LIST_TASK_ID, VM, Responder

ENDPOINTS = [
    pytest.param("GET", "/vm/status", 200, id="list"),
    pytest.param("GET", f"/vm/{VM}/status", 200, id="get"),
    pytest.param("GET", f"/vm/{VM}/status/current", 201, id="get-current"),
    pytest.param("PUT", f"/vm/{VM}/status/current", 201, id="put-current"),
    pytest.param("PUT", f"/vm/{VM}/status/start", 201, id="start"),
    pytest.param("PUT", f"/vm/{VM}/status/stop", 201, id="stop"),
    pytest.param("PUT", f"/vm/{VM}/status/reboot", 201, id="reboot"),
]
STREAMS = [
    pytest.param(None, id="plain"),
    pytest.param("es", id="es-stream"),
    pytest.param("1", id="other-stream"),
]
FINAL_MESSAGES = {
    "start": f"Successfully started VM {VM}",
    "stop": f"Successfully completed stop for VM {VM}",
    "reboot": f"Successfully completed reboot for VM {VM}",
}


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize(("method", "path", "code"), ENDPOINTS)
async def test_endpoint(make_gateway: MakeGateway, responder: Responder,
                        http: aiohttp.ClientSession, method: str, path: str, code: int,
                        stream: str | None) -> None:
    gateway = await make_gateway()
    headers = admin() if stream is None else admin(**{"ES-STREAM": stream})
    for slash in ("/", ""):
        before = len(responder.seen)
        status, got, body = await fetch(http, method, f"{gateway.url}{path}{slash}",
                                        headers=headers)
        [seen] = responder.seen[before:]
        assert (seen.method, seen.path, seen.data, seen.user_id) == (method, path, {}, "admin")
        # The AMQP request asks for the final reply exactly when the HTTP request streams.
        assert seen.stream is (stream is not None)
        assert got["Content-Type"] == "application/json"
        if code == 201 and stream is not None:
            assert status == 201
            assert got["es_stream"] == "true"
            spaces, code_line, final = split_stream(body, es=stream == "es")
            assert code_line == (200 if stream == "es" else None)
            assert final["status"] == "SUCCESS"
            assert final["task_id"] == got["es_task_id"]
            action = path.rsplit("/", 1)[1]
            if action in FINAL_MESSAGES:
                assert final["result"] == {"returncode": 0, "message": FINAL_MESSAGES[action]}
            else:
                assert final["result"]["status"] == "running"
            assert spaces >= 0
            continue
        assert status == code
        assert "es_stream" not in got
        reply = json.loads(body)
        assert "code" not in reply
        assert got["es_task_id"] == reply["task_id"]
        if code == 201:
            assert reply == {"status": "PENDING", "result": None, "task_id": reply["task_id"]}
        else:
            assert reply["status"] == "SUCCESS"
        if path == "/vm/status":
            assert reply["task_id"] == LIST_TASK_ID
            assert [vm["hostname"] for vm in reply["result"]] == [VM]


@pytest.mark.parametrize("stream", STREAMS)
async def test_task_status(make_gateway: MakeGateway, responder: Responder,
                           http: aiohttp.ClientSession, stream: str | None) -> None:
    gateway = await make_gateway()
    _, _, body = await fetch(http, "PUT", f"{gateway.url}/vm/{VM}/status/start/",
                             headers=admin())
    task_id = json.loads(body)["task_id"]
    headers = admin() if stream is None else admin(**{"ES-STREAM": stream})
    # A task status is never streamed (upstream: `response.task_status`): it answers now.
    for slash in ("/", ""):
        status, got, body = await fetch(http, "GET", f"{gateway.url}/task/{task_id}/status"
                                        f"{slash}", headers=headers)
        if status == 200:  # the task may have ended meanwhile (after 0.3 s)
            assert json.loads(body)["status"] == "SUCCESS"
        else:
            assert (status, json.loads(body)["status"]) == (201, "PENDING")
        assert got["es_task_id"] == task_id
        assert "es_stream" not in got
        assert responder.seen[-1].path == f"/task/{task_id}/status"
        assert responder.seen[-1].stream is False
    for _ in range(100):
        status, got, body = await fetch(http, "GET", f"{gateway.url}/task/{task_id}/status/",
                                        headers=headers)
        if status != 201:
            break
        await asyncio.sleep(0.05)
    assert status == 200
    assert json.loads(body) == {
        "status": "SUCCESS", "task_id": task_id,
        "result": {"returncode": 0, "message": FINAL_MESSAGES["start"]}}
    status, got, body = await fetch(http, "GET", f"{gateway.url}/task/0-deadbeef-0-0-0/status/",
                                    headers=headers)
    assert (status, json.loads(body)) == (404, {"detail": "Task does not exist (anymore)"})
    assert "es_task_id" not in got


async def test_error_replies_pass_through_as_json(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession) -> None:
    gateway = await make_gateway()
    status, got, body = await fetch(http, "GET", f"{gateway.url}/vm/missing/status/",
                                    headers=admin(**{"ES-STREAM": "es"}))
    assert (status, json.loads(body)) == (404, {"detail": "VM not found"})
    assert "es_task_id" not in got and "es_stream" not in got


@pytest.mark.parametrize("stream", ["es", "1"])
async def test_stream_of_a_failing_task(make_gateway: MakeGateway, responder: Responder,
                                        http: aiohttp.ClientSession, stream: str) -> None:
    gateway = await make_gateway()
    status, _, body = await fetch(http, "PUT", f"{gateway.url}/vm/broken/status/stop/",
                                  headers=admin(**{"ES-STREAM": stream}))
    assert status == 201  # the status line went out before the task ended
    _, code, final = split_stream(body, es=stream == "es")
    assert code == (400 if stream == "es" else None)
    assert final["status"] == "FAILURE"
    assert final["result"]["detail"] == "Got bad return code (1). Error: vmadm failed"


async def test_query_string_is_the_data_of_a_get(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession) -> None:
    gateway = await make_gateway()
    status, _, _ = await fetch(
        http, "GET", f"{gateway.url}/vm/status/?order_by=-hostname&force=True&x=1&x=2",
        headers=admin(), data=b'{"ignored": true}')
    assert status == 200
    # Strings as sent (the daemon parses booleans like upstream); the last repeat wins.
    assert responder.seen[-1].data == {"order_by": "-hostname", "force": "True", "x": "2"}


@pytest.mark.parametrize(
    ("body", "data"),
    [
        pytest.param(b'{"force": true, "timeout": 60}', {"force": True, "timeout": 60},
                     id="object"),
        pytest.param(b"", {}, id="empty"),
        pytest.param(b"  \n", {}, id="blank"),
        pytest.param('{"cdimage": "débian.iso"}'.encode(), {"cdimage": "débian.iso"},
                     id="utf-8"),
    ],
)
async def test_json_body_is_the_data_of_a_put(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession,
        body: bytes, data: dict[str, object]) -> None:
    gateway = await make_gateway()
    status, _, _ = await fetch(http, "PUT", f"{gateway.url}/vm/{VM}/status/stop/?force=false",
                               headers=admin(**{"Content-Type": "application/json"}), data=body)
    assert status == 201
    assert responder.seen[-1].data == data  # the query string of a PUT is not data


@pytest.mark.parametrize(
    ("headers", "principal"),
    [
        pytest.param({"ES-API-KEY": ADMIN_KEY}, "admin", id="es-api-key-admin"),
        pytest.param({"ES-API-KEY": ALICE_KEY}, "alice", id="es-api-key-alice"),
        pytest.param({"Authorization": f"Token {ALICE_KEY}"}, "alice", id="token"),
        pytest.param({"authorization": f"token {ADMIN_KEY}"}, "admin", id="token-lowercase"),
        pytest.param({"es-api-key": ALICE_KEY, "Authorization": f"Token {ADMIN_KEY}"},
                     "alice", id="api-key-first"),
    ],
)
async def test_the_request_is_published_for_the_keys_principal(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession,
        headers: dict[str, str], principal: str) -> None:
    gateway = await make_gateway()
    status, _, _ = await fetch(http, "GET", f"{gateway.url}/vm/status/", headers=headers)
    assert status == 200
    assert [s.user_id for s in responder.seen] == [principal]


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        pytest.param({}, "Authentication credentials were not provided.", id="none"),
        pytest.param({"ES-API-KEY": ""}, "Authentication credentials were not provided.",
                     id="empty-api-key"),
        pytest.param({"Authorization": "Basic YWRtaW46YWRtaW4="},
                     "Authentication credentials were not provided.", id="other-scheme"),
        pytest.param({"ES-API-KEY": "not-a-configured-key"}, "Invalid API key",
                     id="unknown-api-key"),
        pytest.param({"Authorization": "Token not-a-configured-key"}, "Invalid token.",
                     id="unknown-token"),
        pytest.param({"Authorization": "Token"},
                     "Invalid token header. No credentials provided.", id="token-alone"),
        pytest.param({"Authorization": f"Token {ADMIN_KEY} x"},
                     "Invalid token header. Token string should not contain spaces.",
                     id="token-spaces"),
    ],
)
async def test_refused_without_a_valid_key(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession,
        headers: dict[str, str], detail: str) -> None:
    gateway = await make_gateway()
    for method, path in (("GET", "/vm/status/"), ("PUT", f"/vm/{VM}/status/start/"),
                         ("DELETE", "/vm/status/")):  # before the method check, as upstream
        status, got, body = await fetch(http, method, f"{gateway.url}{path}", headers=headers)
        assert (status, json.loads(body)) == (403, {"detail": detail})
        assert got["Content-Type"] == "application/json"
    assert responder.seen == []


async def test_indent_of_the_accept_header(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession) -> None:
    gateway = await make_gateway()
    # What `es` sends: it gets upstream's indented JSON.
    _, _, body = await fetch(http, "GET", f"{gateway.url}/vm/status/",
                             headers=admin(Accept="application/json; indent=4"))
    assert body.startswith(b'{\n    "status": "SUCCESS"')
    _, _, body = await fetch(http, "GET", f"{gateway.url}/vm/status/", headers=admin())
    assert body.startswith(b'{"status":"SUCCESS"')
