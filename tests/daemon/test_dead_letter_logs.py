"""A sender decides how many of its requests are dead-lettered (a `reply_to` vmd does not
answer, an unparsable body without one): each is counted, but logged once per sender and
minute (vmd.obs.refusals.OncePer), with how many were not logged meanwhile."""

from __future__ import annotations

import json
from collections.abc import Callable

import aio_pika

from vmd.bus.topology import COMMAND_ROUTING_KEY, COMMANDS_EXCHANGE

from .conftest import StartDaemon
from .harness import eventually

N = 40


async def test_dead_lettered_requests_are_logged_once_per_sender(
    start_daemon: StartDaemon, amqp_url_for: Callable[[str], str],
) -> None:
    daemon = await start_daemon()
    connection = await aio_pika.connect(amqp_url_for("alice"))
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(COMMANDS_EXCHANGE, ensure=False)
        for i in range(N):
            await exchange.publish(aio_pika.Message(
                json.dumps({"method": "GET", "path": "/vm/status"}).encode(),
                correlation_id=f"c{i}", reply_to="bob.inbox", user_id="alice"),
                COMMAND_ROUTING_KEY)
    sample = daemon.metrics.registry.get_sample_value
    await eventually(lambda: sample("vmd_dead_lettered_total") == N,
                     what="every request dead-lettered")
    logs = daemon.intake._dead_letter_logs
    assert set(logs._logged) == {"alice"}  # logged once ...
    assert logs._quiet == {"alice": N - 1}  # ... the rest counted for the next line
