"""`ConnectFailed.refusal` and `.reason`: what failed at the first connect, in a word, from
the real broker (a wrong password, a vhost that does not exist, a closed port, a port that
never answers), so that vmctl can say it in one line of its own."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from vmd.bus import BusClient, BusSettings, ConnectFailed

Settings = Callable[..., BusSettings]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("url", "refusal", "reason", "message"),
    [
        pytest.param("amqp://alice:wrong@127.0.0.1:5672/{vhost}", "login", "ACCESS_REFUSED",
                     "ACCESS_REFUSED - Login was refused", id="password"),
        pytest.param("amqp://alice:alice@127.0.0.1:5672/no-such-vhost", "vhost", "NOT_ALLOWED",
                     "NOT_ALLOWED (the vhost does not exist, or the user has no permissions",
                     id="vhost"),
        pytest.param("amqp://alice:alice@127.0.0.1:{closed}/{vhost}", "unreachable",
                     "connection refused", "after 2 attempts: ", id="closed-port"),
        pytest.param("amqp://alice:alice@no-such-host.invalid:5672/{vhost}", "unreachable",
                     "unknown host", "after 2 attempts: ", id="unknown-host"),
    ],
)
async def test_what_failed(bus_settings: Settings, amqp_vhost: str, url: str, refusal: str,
                           reason: str, message: str) -> None:
    url = url.format(vhost=amqp_vhost, closed=_closed_port())
    client = BusClient(bus_settings(url=url, connect_attempts=2))
    with pytest.raises(ConnectFailed) as info:
        await client.start()
    assert (info.value.refusal, info.value.reason) == (refusal, reason)
    assert message in str(info.value)
    assert "Connection.Close" not in str(info.value)


async def test_a_broker_that_never_answers(bus_settings: Settings) -> None:
    accepted: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda _r, w: accepted.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        client = BusClient(bus_settings(url=f"amqp://a:a@127.0.0.1:{port}/v",
                                        connect_attempts=1, connect_timeout=0.5))
        with pytest.raises(ConnectFailed) as info:
            await client.start()
        for writer in accepted:
            writer.close()
    assert (info.value.refusal, info.value.reason) == ("unreachable", "no answer within 0.5s")
