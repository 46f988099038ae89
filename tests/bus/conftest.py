"""Fixtures of the bus tests: buses and clients that are closed in reverse order at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from vmd.bus import DAEMON, Bus, BusClient, BusSettings, Topology


@pytest.fixture
async def make_bus(
    bus_settings: Callable[..., BusSettings],
) -> AsyncIterator[Callable[..., Awaitable[Bus]]]:
    """`await make_bus(user="vmd", topology=DAEMON, start=True, **settings)`."""
    opened: list[Bus] = []

    async def make(
        user: str = "vmd", topology: Topology | None = DAEMON, start: bool = True, **kw: Any
    ) -> Bus:
        bus = Bus(bus_settings(user, **kw), topology=topology)
        opened.append(bus)
        if start:
            await bus.start()
        return bus

    yield make
    for bus in reversed(opened):
        await bus.close(drain_timeout=1.0)


@pytest.fixture
async def make_client(
    bus_settings: Callable[..., BusSettings],
) -> AsyncIterator[Callable[..., Awaitable[BusClient]]]:
    """`await make_client(user="alice", **settings)`: a started `BusClient`."""
    opened: list[BusClient] = []

    async def make(user: str = "alice", **kw: Any) -> BusClient:
        client = BusClient(bus_settings(user, **kw))
        opened.append(client)
        await client.start()
        return client

    yield make
    for client in reversed(opened):
        await client.close()
