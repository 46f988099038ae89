"""Fixtures of the gateway tests: a responder standing in for the daemon, gateways started
in-process (`ApiService`) against the real broker, and an HTTP client.

Keys: `ADMIN_KEY` -> admin, `ALICE_KEY` -> alice. Stream keep-alives run 20x faster than
upstream's schedule (`FAST_OFFSETS`) so that stream tests take a fraction of a second.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from vmd.api import ApiMetrics, ApiService, keepalive_offsets
from vmd.bus import Bus, BusSettings
from vmd.bus.topology import COMMANDS_QUEUE, PUBLIC
from vmd.config import ApiSettings

from .helpers import ADMIN_KEY, ALICE_KEY, TIME_SCALE
from .responder import Responder

MakeGateway = Callable[..., Awaitable[ApiService]]


def fast_offsets() -> Iterator[float]:
    return (offset * TIME_SCALE for offset in keepalive_offsets())


@pytest.fixture
async def responder(bus_settings: Callable[..., BusSettings]) -> AsyncIterator[Responder]:
    bus = Bus(bus_settings("vmd"), topology=PUBLIC)
    await bus.start()
    fake = Responder(bus)
    await bus.consume(COMMANDS_QUEUE, fake.handle)
    try:
        yield fake
    finally:
        await fake.close()
        await bus.close(drain_timeout=1.0)


@pytest.fixture
async def make_gateway(
    bus_settings: Callable[..., BusSettings],
) -> AsyncIterator[MakeGateway]:
    """`await make_gateway(user="vmd-api", url=None, keys=..., **api_settings)`: started."""
    started: list[ApiService] = []
    counter = itertools.count()

    async def make(user: str = "vmd-api", url: str | None = None,
                   keys: dict[str, str] | None = None, check_impersonation: bool = True,
                   stream_limit: float | None = None, **overrides: Any) -> ApiService:
        bus = bus_settings(user, url=url)
        values: dict[str, Any] = {"broker_url": bus.url, "listen": "127.0.0.1:0",
                                  "keys": {ADMIN_KEY: "admin", ALICE_KEY: "alice"}
                                  if keys is None else keys, "timeout": 5.0,
                                  "drain_timeout": 3.0}
        values.update(overrides)
        extra: dict[str, Any] = {}
        if stream_limit is not None:
            extra["stream_limit"] = stream_limit
        service = ApiService(
            ApiSettings(**values),
            bus=BusSettings(bus.url, connection_name=f"{bus.connection_name}:{next(counter)}",
                            connect_attempts=3, retry_delay=0.05, retry_delay_max=0.2,
                            connect_timeout=3.0, publish_timeout=5.0),
            metrics=ApiMetrics(), offsets=fast_offsets,
            check_impersonation=check_impersonation, **extra)
        await service.start()
        started.append(service)
        return service

    yield make
    for service in reversed(started):
        await service.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
