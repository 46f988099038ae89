"""ES-STREAM in detail: keep-alive spaces while the task runs, a client that goes away, a
stream cut by shutdown or by its time limit, and the fallback to polling the task when the
pushed final reply is lost with the broker connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest
from structlog.testing import capture_logs
from support.proxy import TcpProxy

from vmd.api import ApiService

from .conftest import MakeGateway
from .helpers import TIME_SCALE, admin, split_stream
from .responder import VM, Responder


def sample(service: ApiService, name: str, **labels: str) -> float:
    value = service.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("stream", ["es", "yes"])
async def test_spaces_keep_the_connection_alive_until_the_task_ends(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession,
        stream: str) -> None:
    responder.final_delay = 40 * TIME_SCALE  # upstream: 40 s, i.e. 8 keep-alive ticks
    gateway = await make_gateway()
    async with http.put(f"{gateway.url}/vm/{VM}/status/start/",
                        headers=admin(**{"ES-STREAM": stream})) as response:
        task_id = response.headers["es_task_id"]
        # The 201 came at once: the task still runs.
        assert task_id in responder.running
        assert (response.status, response.headers["es_stream"]) == (201, "true")
        first = await response.content.readexactly(1)
        assert first == b" "
        body = first + await response.read()
    spaces, code, final = split_stream(body, es=stream == "es")
    assert spaces >= 1
    assert code == (200 if stream == "es" else None)
    assert final["task_id"] == task_id
    assert task_id in responder.finished
    assert sample(gateway, "vmd_api_streams_ended_total", outcome="final") == 1
    assert sample(gateway, "vmd_api_requests_total", kind="start", code="201") == 1
    assert gateway.gateway.streams == 0


async def test_a_client_that_goes_away_is_dropped_without_leftovers(
        make_gateway: MakeGateway, responder: Responder) -> None:
    gateway = await make_gateway()
    baseline = asyncio.all_tasks()
    with capture_logs() as logs:
        async with aiohttp.ClientSession() as http:
            response = await http.put(f"{gateway.url}/vm/slow/status/stop/",
                                      headers=admin(**{"ES-STREAM": "es"}))
            assert response.status == 201
            assert await response.content.readexactly(1) == b" "
            assert gateway.gateway.streams == 1
            response.close()  # the connection, mid-body
        await wait_for(lambda: gateway.gateway.streams == 0)
    [gone] = [line for line in logs if line["event"].startswith("stream: the client went away")]
    assert gone["task_id"] == response.headers["es_task_id"]
    assert sample(gateway, "vmd_api_streams_ended_total", outcome="disconnected") == 1
    assert sample(gateway, "vmd_api_streams") == 0
    # No pending reply and no task of the gateway is left (the responder's own timer that
    # would finish the task in 30 s is the only newcomer).
    assert gateway.client._pending == {}
    await asyncio.sleep(0.1)
    left = {t for t in asyncio.all_tasks() - baseline if not t.done()}
    left -= responder._background | {asyncio.current_task()}
    assert left == set(), [t.get_coro() for t in left]


async def test_shutdown_cuts_streams_with_their_current_state(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession) -> None:
    gateway = await make_gateway()
    async with http.put(f"{gateway.url}/vm/slow/status/stop/",
                        headers=admin(**{"ES-STREAM": "es"})) as response:
        task_id = response.headers["es_task_id"]
        assert await response.content.readexactly(1) == b" "
        stopping = asyncio.create_task(gateway.stop())
        body = await response.read()
    await stopping
    _, code, state = split_stream(b" " + body, es=True)
    # The task still runs: its current state is the 201 PENDING of GET /task/<id>/status,
    # asked through the broker, which is closed only after the streams ended.
    assert (code, state) == (201, {"status": "PENDING", "result": None, "task_id": task_id})
    assert responder.seen[-1].path == f"/task/{task_id}/status"
    assert responder.seen[-1].user_id == "admin"
    assert sample(gateway, "vmd_api_streams_ended_total", outcome="shutdown") == 1


async def test_shutdown_lets_requests_in_flight_finish_and_refuses_new_ones(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession) -> None:
    gateway = await make_gateway()
    url = gateway.url
    in_flight = asyncio.create_task(http.get(f"{url}/vm/lazy/status/", headers=admin()))
    await wait_for(lambda: len(responder.seen) == 1)
    await gateway.stop()
    response = await in_flight
    assert response.status == 200  # answered after the listener closed
    assert (await response.json())["result"]["hostname"] == "lazy"
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.get(f"{url}/vm/status/", headers=admin())


async def test_a_stream_ends_at_its_time_limit_with_the_current_state(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession) -> None:
    gateway = await make_gateway(stream_limit=10 * TIME_SCALE)
    async with http.put(f"{gateway.url}/vm/slow/status/reboot/",
                        headers=admin(**{"ES-STREAM": "es"})) as response:
        task_id = response.headers["es_task_id"]
        body = await response.read()
    spaces, code, state = split_stream(body, es=True)
    assert (code, state["status"], state["task_id"]) == (201, "PENDING", task_id)
    assert spaces >= 1
    assert sample(gateway, "vmd_api_streams_ended_total", outcome="timeout") == 1


async def test_lost_final_reply_falls_back_to_polling_the_task(
        amqp_proxy: TcpProxy, make_gateway: MakeGateway, responder: Responder,
        http: aiohttp.ClientSession, amqp_clean: str) -> None:
    responder.final_delay = 1.0
    gateway = await make_gateway(url=amqp_proxy.url("vmd-api", "vmd-api", amqp_clean))
    async with http.put(f"{gateway.url}/vm/{VM}/status/start/",
                        headers=admin(**{"ES-STREAM": "es"})) as response:
        task_id = response.headers["es_task_id"]
        assert await response.content.readexactly(1) == b" "
        # The reply that vmd will push goes to a connection that is gone.
        assert amqp_proxy.cut() == 1
        body = await response.read()
    _, code, final = split_stream(body, es=True)
    assert (code, final["status"], final["task_id"]) == (200, "SUCCESS", task_id)
    polls = [s for s in responder.seen if s.path == f"/task/{task_id}/status"]
    assert polls and {s.user_id for s in polls} == {"admin"}
    assert gateway.client.reconnects == 1
    assert gateway.client._pending == {}


async def test_metrics_count_requests_by_kind_and_code(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession) -> None:
    gateway = await make_gateway()
    for path, headers in ((f"/vm/{VM}/status/", admin()), ("/vm/status/", admin()),
                          ("/vm/status/", {}), ("/nowhere/", admin())):
        async with http.get(f"{gateway.url}{path}", headers=headers) as response:
            await response.read()
    assert sample(gateway, "vmd_api_requests_total", kind="get", code="200") == 1
    assert sample(gateway, "vmd_api_requests_total", kind="list", code="200") == 1
    assert sample(gateway, "vmd_api_requests_total", kind="other", code="403") == 1
    assert sample(gateway, "vmd_api_requests_total", kind="other", code="404") == 1
    assert sample(gateway, "vmd_api_request_duration_seconds_count", kind="list") == 1
    assert sample(gateway, "vmd_broker_reconnects_total") == 0
