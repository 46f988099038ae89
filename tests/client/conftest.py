"""Fixtures of the client tests: `responder`, a stand-in for vmd (tests/client/responder.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from vmd.bus import Bus, BusSettings
from vmd.bus.topology import COMMANDS_QUEUE, PUBLIC

from .responder import Responder


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
