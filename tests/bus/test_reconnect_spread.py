"""Reconnects after a broker outage are spread: the first waits a random 0..spread seconds
(so a hundred agents losing one broker do not come back in one instant), then the capped,
jittered back-off; the first connect tells each failed attempt to `on_connect_retry`.
Through the real broker and a cuttable proxy; the random draw is recorded, not timed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from support.proxy import TcpProxy

from vmd.bus import Bus, BusSettings
from vmd.bus import link as link_module
from vmd.bus.topology import DAEMON
from vmd.cli import agent_cmd


async def _until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_the_first_reconnect_after_a_loss_waits_a_random_spread(
    bus_settings: Callable[..., BusSettings], amqp_proxy: TcpProxy, amqp_vhost: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    draws: list[tuple[float, float]] = []

    def uniform(a: float, b: float) -> float:
        draws.append((a, b))
        return b / 1000  # keep the test fast

    monkeypatch.setattr(link_module.random, "uniform", uniform)
    url = amqp_proxy.url("vmd", "vmd", amqp_vhost)
    bus = Bus(bus_settings(url=url, reconnect_spread=30.0), topology=DAEMON)
    await bus.start()
    try:
        assert (0, 30.0) not in draws  # the first connect is not delayed
        assert amqp_proxy.cut() == 1
        await _until(lambda: bus.reconnects == 1 and bus.connected)
        assert draws[0] == (0, 30.0)  # the spread is drawn before the first reconnect
    finally:
        await bus.close()


async def test_no_spread_by_default_and_every_failed_first_attempt_is_told(
    bus_settings: Callable[..., BusSettings], amqp_proxy: TcpProxy, amqp_vhost: str,
) -> None:
    told: list[tuple[int, str, float]] = []
    amqp_proxy.block()
    settings = bus_settings(url=amqp_proxy.url("vmd", "vmd", amqp_vhost), connect_attempts=None,
                            on_connect_retry=lambda *a: told.append(a))
    assert settings.reconnect_spread == 0.0
    bus = Bus(settings, topology=DAEMON)
    starting = asyncio.ensure_future(bus.start())
    await _until(lambda: len(told) >= 3)
    amqp_proxy.unblock()
    await starting
    try:
        assert [n for n, _, _ in told[:3]] == [1, 2, 3]
        assert all(delay <= settings.retry_delay_max * 1.2 for _, _, delay in told)
    finally:
        await bus.close()


def test_agents_spread_their_reconnects() -> None:
    assert agent_cmd.RECONNECT_SPREAD > 0
    with pytest.raises(ValueError, match="reconnect_spread"):
        BusSettings("amqp://u:p@127.0.0.1/v", reconnect_spread=-1)
