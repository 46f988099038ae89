"""The gateway's side of bounded state (issue 12, "Unbounded growth"): a request's
`Idempotency-Key` is its `message_id` (so a client's own retry is executed once), a
malformed one is a 400, and each API key holds at most `[api] max_streams_per_key`
ES-STREAM responses open. (That status polling adds no idempotency record is the daemon's
part: tests/daemon/test_gateway_records.py.)"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from support.proxy import TcpProxy

from vmd.api.forward import MAX_IDEMPOTENCY_KEY
from vmd.daemon.requests import MAX_MESSAGE_ID

from .conftest import MakeGateway
from .helpers import admin, alice, fetch
from .responder import Responder
from .test_streams import wait_for

BAD_KEY = {"detail": "Malformed request: Idempotency-Key must be 1 to 128 printable ASCII "
                     "characters"}


def test_the_gateway_takes_the_keys_vmd_takes() -> None:
    assert MAX_IDEMPOTENCY_KEY == MAX_MESSAGE_ID


async def test_the_idempotency_key_is_the_message_id(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession) -> None:
    gateway = await make_gateway()
    url = gateway.url
    for value in ('"deploy-42-start-web01"', "deploy-43", '"with \\"quotes\\""'):
        status, _, _ = await fetch(http, "PUT", f"{url}/vm/web01/status/start/",
                                   headers=admin(**{"Idempotency-Key": value}))
        assert status == 201
    assert [s.message_id for s in responder.seen] == [
        "deploy-42-start-web01", "deploy-43", 'with "quotes"']


@pytest.mark.parametrize("value", [
    pytest.param("k" * (MAX_IDEMPOTENCY_KEY + 1), id="too-long"),
    pytest.param('""', id="empty-string"),
    pytest.param("caf\u00e9", id="not-ascii"),
    pytest.param("tab\there", id="control"),
])
async def test_a_malformed_idempotency_key_is_a_400_and_nothing_is_sent(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession,
        value: str) -> None:
    gateway = await make_gateway()
    status, _, body = await fetch(http, "PUT", f"{gateway.url}/vm/web01/status/start/",
                                  headers=admin(**{"Idempotency-Key": value}))
    assert (status, json.loads(body)) == (400, BAD_KEY)
    # The longest accepted key goes through (a request the responder sees).
    status, _, _ = await fetch(http, "PUT", f"{gateway.url}/vm/web01/status/start/",
                               headers=admin(**{"Idempotency-Key": "k" * MAX_IDEMPOTENCY_KEY}))
    assert status == 201
    assert [s.message_id for s in responder.seen] == ["k" * MAX_IDEMPOTENCY_KEY]


async def test_a_lost_request_is_sent_again_with_its_idempotency_key(
        amqp_proxy: TcpProxy, make_gateway: MakeGateway, responder: Responder,
        http: aiohttp.ClientSession, amqp_clean: str) -> None:
    gateway = await make_gateway(url=amqp_proxy.url("vmd-api", "vmd-api", amqp_clean))
    # `lazy` answers after 0.5 s: the connection is cut while the gateway waits.
    request = asyncio.create_task(fetch(http, "PUT", f"{gateway.url}/vm/lazy/status/start/",
                                        headers=admin(**{"Idempotency-Key": "retry-me"})))
    while not responder.seen:
        await asyncio.sleep(0.01)
    assert amqp_proxy.cut() == 1
    status, _, _ = await request
    assert status == 201
    first, again = responder.seen
    assert (first.message_id, again.message_id) == ("retry-me", "retry-me")


async def test_es_streams_per_api_key_are_capped(
        make_gateway: MakeGateway, responder: Responder) -> None:
    gateway = await make_gateway(max_streams_per_key=2)
    url = f"{gateway.url}/vm/slow/status/stop/"
    async with aiohttp.ClientSession() as http:
        held = [await http.put(url, headers=admin(**{"ES-STREAM": "es"})) for _ in range(2)]
        assert [r.status for r in held] == [201, 201]
        status, _, body = await fetch(http, "PUT", url, headers=admin(**{"ES-STREAM": "es"}))
        assert (status, json.loads(body)) == (
            429, {"detail": "Too many open ES-STREAM responses for this API key"})
        assert len(responder.seen) == 2  # refused before publishing: nothing ran
        # Another key has slots of its own; a plain request is no stream.
        other = await http.put(url, headers=alice(**{"ES-STREAM": "es"}))
        assert other.status == 201
        assert (await fetch(http, "PUT", url, headers=admin()))[0] == 201
        # A stream that ends gives its slot back.
        held[0].close()
        key = gateway.gateway.keys.key_of(admin())
        await wait_for(lambda: gateway.gateway.slots.open(key) == 1)
        again = await http.put(url, headers=admin(**{"ES-STREAM": "es"}))
        assert again.status == 201
        for response in (*held, other, again):
            response.close()

