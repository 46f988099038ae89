"""Bounded idempotency state (issue 12, "Unbounded growth"): pure reads are not recorded, a
`message_id` is at most 128 characters, and each principal keeps at most
`[daemon] max_idempotency_records` records, its oldest evicted first (memory and store)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
from support.amqp import message_count_settles

from vmd import config
from vmd.bus import BusClient
from vmd.bus.topology import DEAD_QUEUE
from vmd.daemon import Daemon
from vmd.daemon.idempotency import DEFAULT_MAX_RECORDS
from vmd.daemon.intake import DEFAULT_MAX_PENDING
from vmd.model import Reply, Request, VmStatus

from .conftest import Cloud, StartDaemon, seed
from .harness import EventLog, FakeAgent, RawRequester, eventually

START = {"method": "PUT", "path": "/vm/web02.example.com/status/start"}
CONFIG = Path(__file__).resolve().parents[2] / "config" / "vmd.toml"
TOO_LONG = Reply(400, {"detail": "Malformed request: 'message_id' is longer than 128 characters"})


async def stored(daemon: Daemon, user: str, message_id: str) -> bool:
    record = await daemon.pipeline.run_store(daemon.store.get_idempotency, user, message_id,
                                             daemon.clock())
    return record is not None


def kept(daemon: Daemon, user: str, message_id: str) -> bool:
    key = (user, message_id)
    return key in daemon.core.idempotency or key in daemon.core.cold


async def test_pure_reads_are_not_recorded_and_answered_afresh(cloud: Cloud) -> None:
    daemon = cloud.daemon
    start = await cloud.call("alice", "PUT", "/vm/web02.example.com/status/start",
                             message_id="start-1")
    assert start.code == 201
    task_id = start.body["task_id"]
    reads = [("GET", "/vm/status"), ("GET", "/vm/web02.example.com/status"),
             ("GET", f"/task/{task_id}/status"), ("GET", "/nope"), ("POST", "/vm/status")]
    for i, (method, path) in enumerate(reads):
        await cloud.call("alice", method, path, message_id=f"read-{i}")
    before = await cloud.call("alice", "GET", "/vm/web02.example.com/status",
                              message_id="same-read")
    assert before.body["result"]["status"] == "starting"
    task = await cloud.agent.next_task()
    await cloud.agent.result(task)
    await eventually(lambda: cloud.vm("web02.example.com").status is VmStatus.RUNNING,
                     what="web02 running")
    # The same message_id again: a read is answered afresh, not from a record.
    after = await cloud.call("alice", "GET", "/vm/web02.example.com/status",
                             message_id="same-read")
    assert after.body["result"]["status"] == "running"
    done = await cloud.call("alice", "GET", f"/task/{task_id}/status", message_id="read-2")
    assert done.code == 200
    # Only the start is kept, in memory and in the store.
    assert daemon.core.records_of("alice") == 1
    assert kept(daemon, "alice", "start-1")
    assert await stored(daemon, "alice", "start-1")
    for i in range(len(reads)):
        assert not kept(daemon, "alice", f"read-{i}")
        assert not await stored(daemon, "alice", f"read-{i}")
    assert not await stored(daemon, "alice", "same-read")
    assert daemon.metrics.idempotent_replays._value.get() == 0


async def test_get_current_is_recorded(cloud: Cloud) -> None:
    """It makes a node task: a repeat is answered with the same task, not a second read."""
    first = await cloud.call("alice", "GET", "/vm/web01.example.com/status/current",
                             message_id="current-1")
    assert first.code == 201
    assert kept(cloud.daemon, "alice", "current-1")
    task = await cloud.agent.next_task()
    await cloud.agent.result(task, state="running")
    await cloud.events.wait(lambda _: cloud.events.tasks_done(task.task_id))
    again = await cloud.call("alice", "GET", "/vm/web01.example.com/status/current",
                             message_id="current-1")
    assert again == first
    assert cloud.daemon.metrics.idempotent_replays._value.get() == 1


async def test_a_message_id_over_128_characters_is_a_400_and_not_executed(
    cloud: Cloud, raw: Callable[..., Any], amqp_channel: aio_pika.abc.AbstractChannel,
) -> None:
    requester: RawRequester = await raw("alice")
    cid = await requester.send(START, message_id="m" * 129)
    assert await requester.replies_for(cid) == [TOO_LONG]
    # Without reply_to: dead-lettered like any malformed request.
    await requester.send(START, reply=False, message_id="d" * 200)
    assert await message_count_settles(amqp_channel, DEAD_QUEUE, 1) == 1
    dead = await (await amqp_channel.get_queue(DEAD_QUEUE)).get(no_ack=True)
    assert dead is not None
    assert dead.headers["x-vmd-error"] == TOO_LONG.body["detail"]
    assert cloud.vm("web02.example.com").status is VmStatus.STOPPED
    # 128 is fine; the node's first task is this one's (the refused ones made none).
    cid = await requester.send(START, message_id="k" * 128)
    (reply,) = await requester.replies_for(cid)
    assert reply.code == 201
    assert (await cloud.agent.next_task()).task_id == reply.body["task_id"]
    assert cloud.daemon.core.records_of("alice") == 1


async def _capped(start_daemon: StartDaemon, make_agent: Callable[..., Awaitable[FakeAgent]],
                  make_client: Callable[..., Awaitable[BusClient]], events: EventLog,
                  cap: int) -> Cloud:
    daemon = await start_daemon(max_idempotency_records=cap)
    agent = await make_agent("node1")
    await seed(daemon, agent)
    return Cloud(daemon, agent, events, await make_client("admin"), await make_client("alice"),
                 await make_client("bob"))


async def test_records_per_principal_are_capped_oldest_first(
    start_daemon: StartDaemon, make_agent: Callable[..., Awaitable[FakeAgent]],
    make_client: Callable[..., Awaitable[BusClient]], events: EventLog,
) -> None:
    cloud = await _capped(start_daemon, make_agent, make_client, events, 3)
    daemon = cloud.daemon
    stop = Request("PUT", "/vm/web02.example.com/status/stop")  # stopped: refused, no task
    answers = [await cloud.alice.call(stop, timeout=10, message_id=f"m{i}") for i in range(5)]
    assert all(a.code != 201 for a in answers)
    bob = await cloud.bob.call(stop, timeout=10, message_id="b0")  # 404 for bob: his own record
    assert daemon.core.records_of("alice") == 3
    assert daemon.core.records_of("bob") == 1
    assert [kept(daemon, "alice", f"m{i}") for i in range(5)] == [False, False, True, True, True]
    assert daemon.metrics.idempotency_evicted._value.get() == 2
    await daemon.pipeline.flush()
    assert [await stored(daemon, "alice", f"m{i}") for i in range(5)] == [
        False, False, True, True, True]
    # The newest is a repeat, answered from its record; bob's is untouched.
    assert await cloud.alice.call(stop, timeout=10, message_id="m4") == answers[4]
    assert daemon.metrics.idempotent_replays._value.get() == 1
    assert await cloud.bob.call(stop, timeout=10, message_id="b0") == bob
    assert daemon.metrics.idempotent_replays._value.get() == 2
    # An evicted one is a new request: recorded again, evicting the oldest kept (m2).
    await cloud.alice.call(stop, timeout=10, message_id="m0")
    assert daemon.metrics.idempotent_replays._value.get() == 2
    assert [kept(daemon, "alice", f"m{i}") for i in range(5)] == [True, False, False, True, True]

    # A restart with a lower cap applies it to the restored records, store included.
    await daemon.shutdown()
    again = await start_daemon(max_idempotency_records=2)
    assert again.core.records_of("alice") == 2
    assert [kept(again, "alice", f"m{i}") for i in (3, 4, 0)] == [False, True, True]
    await again.pipeline.flush()
    assert not await stored(again, "alice", "m3")
    assert again.core.records_of("bob") == 1


def test_the_limits_are_settings_with_documented_defaults(tmp_path: Path) -> None:
    shipped = config.load(CONFIG, sections=("daemon",))
    assert shipped.daemon is not None
    defaults = config.DaemonSettings(store=Path("."))
    assert shipped.daemon.max_idempotency_records == defaults.max_idempotency_records == 10_000
    assert shipped.daemon.max_pending_tasks == defaults.max_pending_tasks == 100
    assert defaults.max_idempotency_records == DEFAULT_MAX_RECORDS
    assert defaults.max_pending_tasks == DEFAULT_MAX_PENDING
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG.read_text().replace("max_pending_tasks = 100", "max_pending_tasks = 0")
                   .replace("max_idempotency_records = 10000", 'max_idempotency_records = "x"'))
    problems = config.check(bad)
    assert f"{bad}: [daemon] max_pending_tasks: must be an integer >= 1 (got 0)" in problems
    assert any("[daemon] max_idempotency_records: must be an integer >= 1" in p
               for p in problems)
