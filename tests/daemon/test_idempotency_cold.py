"""Idempotency records that cooled (vmd.daemon.core) on a running daemon: after
`idempotency_hot_seconds` only the key stays in memory, and a late stream repeat is answered
from the store; cold keys survive a restart. A late plain repeat answered from the store and
not run is tested on the fake clock in tests/daemon/fast/test_idempotency.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from vmd.bus import BusClient
from vmd.model import Reply, Request

from .conftest import Cloud, StartDaemon, daemon_options, seed
from .harness import EventLog, FakeAgent, eventually

HOT = 0.3  # seconds; the housekeeping tick is 0.05 s in these tests


async def _cloud(start_daemon: StartDaemon, make_agent: Callable[..., Awaitable[FakeAgent]],
                 make_client: Callable[..., Awaitable[BusClient]], events: EventLog) -> Cloud:
    daemon = await start_daemon(options=daemon_options(idempotency_hot_seconds=HOT))
    agent = await make_agent("node1")
    await seed(daemon, agent)
    return Cloud(daemon, agent, events, await make_client("admin"), await make_client("alice"),
                 await make_client("bob"))


async def test_a_late_stream_repeat_gets_both_answers(
    start_daemon: StartDaemon, make_agent: Callable[..., Awaitable[FakeAgent]],
    make_client: Callable[..., Awaitable[BusClient]], events: EventLog,
) -> None:
    cloud = await _cloud(start_daemon, make_agent, make_client, events)
    request = Request("PUT", "/vm/web02.example.com/status/start")
    got: list[Reply] = []

    async def stream() -> None:
        async for reply in cloud.alice.stream(request, message_id="s-late", timeout=10,
                                              final_timeout=10):
            got.append(reply)

    first = asyncio.create_task(stream())
    task = await cloud.agent.next_task()
    await cloud.agent.result(task)
    await asyncio.wait_for(first, 10)
    key = ("alice", "s-late")
    await eventually(lambda: key in cloud.daemon.core.cold, what="the record cooled")
    answers = list(got)
    got.clear()
    await asyncio.wait_for(stream(), 10)
    assert got == answers
    assert [r.code for r in got] == [201, 200]
    assert cloud.agent.tasks.empty()


async def test_cold_keys_survive_a_restart_and_go_at_24_hours(
    start_daemon: StartDaemon, make_agent: Callable[..., Awaitable[FakeAgent]],
    make_client: Callable[..., Awaitable[BusClient]], events: EventLog,
) -> None:
    cloud = await _cloud(start_daemon, make_agent, make_client, events)
    frozen = await cloud.call("admin", "PUT", "/vm/web02.example.com/status/stop",
                              {"freeze": True}, message_id="freeze-late")
    assert frozen.code == 200
    key = ("admin", "freeze-late")
    await eventually(lambda: key in cloud.daemon.core.cold, what="the record cooled")
    await cloud.daemon.shutdown()
    # A new process: the record, restored from the store, is cooled at start-up.
    daemon = await start_daemon(options=daemon_options(idempotency_hot_seconds=HOT))
    await eventually(lambda: key in daemon.core.cold, what="the restored record cooled")
    admin = await make_client("admin")
    again = await admin.call(Request("PUT", "/vm/web02.example.com/status/stop",
                                     {"freeze": True}), timeout=10, message_id="freeze-late")
    assert again == frozen
    # Past 24 h the key is purged from memory (and the store purges its own).
    created = daemon.core.cold[key]
    assert daemon.core.purge_idempotency(created + 24 * 3600 + 1) >= 1
    assert key not in daemon.core.cold
