"""Through the HTTP gateway to the real daemon (issue 12, "Unbounded growth"): `es`-style
status polling leaves no idempotency record (every HTTP request's publish carries a random
`message_id`, and vmd records only requests that may change something), and a request's
`Idempotency-Key` is its key: a repeat gets the first answer and runs nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from vmd.api import ApiService
from vmd.bus import BusSettings
from vmd.config import ApiSettings

from .conftest import Cloud

KEY = "alice-key-0123456789abcdef"


@pytest.fixture
async def gateway(amqp_url_for: Callable[[str], str]) -> AsyncIterator[str]:
    url = amqp_url_for("vmd-api")
    service = ApiService(
        ApiSettings(broker_url=url, listen="127.0.0.1:0", keys={KEY: "alice"}, timeout=10.0),
        bus=BusSettings(url, connection_name="test:gateway-records", connect_attempts=3))
    await service.start()
    try:
        yield service.url
    finally:
        await service.stop()


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, object]]:
    async with http.get(url, headers={"ES-API-KEY": KEY}) as response:
        return response.status, json.loads(await response.read())


async def test_status_polling_through_the_gateway_records_nothing(
        cloud: Cloud, gateway: str) -> None:
    async with aiohttp.ClientSession() as http:
        start = f"{gateway}/vm/web02.example.com/status/start/"
        async with http.put(start, headers={"ES-API-KEY": KEY}) as response:
            assert response.status == 201
            task_id = json.loads(await response.read())["task_id"]
        for _ in range(5):
            assert (await _get(http, f"{gateway}/vm/status/"))[0] == 200
            assert (await _get(http, f"{gateway}/vm/web02.example.com/status/"))[0] == 200
            assert (await _get(http, f"{gateway}/task/{task_id}/status/"))[0] == 201
    assert cloud.daemon.core.records_of("alice") == 1  # the start, nothing of the polls


async def test_an_idempotency_key_makes_an_http_retry_safe(cloud: Cloud, gateway: str) -> None:
    url = f"{gateway}/vm/web02.example.com/status/start/"
    headers = {"ES-API-KEY": KEY, "Idempotency-Key": '"deploy-7-start-web02"'}
    async with aiohttp.ClientSession() as http:
        answers = []
        for _ in range(2):
            async with http.put(url, headers=headers) as response:
                answers.append((response.status, json.loads(await response.read())))
    assert answers[0] == answers[1]
    assert answers[0][0] == 201
    assert ("alice", "deploy-7-start-web02") in cloud.daemon.core.idempotency
    assert cloud.daemon.metrics.idempotent_replays._value.get() == 1
    assert (await cloud.agent.next_task()).task_id == answers[0][1]["task_id"]
