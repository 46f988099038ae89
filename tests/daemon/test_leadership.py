"""vmd.daemon.leadership in-process, on the real PostgreSQL and the real broker.

The leader's clock is injected (a monotonic time the test moves), and its exit is a
function that raises instead of ending pytest: "step down" is then an exception the test
catches, with the exit code it would have exited with. Nothing waits for a lease to pass:
the row's expiry is moved into the past, as the database's clock would.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from typing import NoReturn

import aio_pika
import psycopg
import pytest
from support.amqp import message_count_settles
from support.postgres import fresh_database

from vmd.bus import Bus, BusSettings, Delivery, Outgoing
from vmd.daemon.leadership import Leadership
from vmd.model import Node, NodeName, NodeStatus
from vmd.obs.metrics import DaemonMetrics
from vmd.obs.systemd import ExitCode
from vmd.store import Batch, Store, lease
from vmd.store.lease import Lease


class SteppedDown(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _exit(code: int) -> NoReturn:
    raise SteppedDown(code)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_database("vmd_leader") as database:
        yield database


def _leadership(url: str, clock: Clock, holder: str = "daemon-a") -> Leadership:
    return Leadership(url, metrics=DaemonMetrics(), lease_seconds=10.0, holder=holder,
                      clock=clock, exit=_exit)


def _expire(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"UPDATE {lease.TABLE} SET expires = now() - interval '1 second'")


def _sample(leader: Leadership, family: str) -> float:
    value = leader._metrics.registry.get_sample_value(family)
    assert value is not None
    return value


async def test_past_its_local_deadline_a_leader_shows_0_and_steps_down(url: str) -> None:
    clock = Clock()
    leader = _leadership(url, clock)
    assert await leader.acquire(asyncio.Event())
    assert leader.held == Lease(holder="daemon-a", epoch=1)
    assert leader.deadline == pytest.approx(clock.now + 9.0)  # lease - 10 %
    leader.check()  # within the deadline: nothing
    assert _sample(leader, "vmd_leader") == 1
    clock.now += 9.0
    # A scrape before the process noticed already says 0: never two leaders at 1.
    assert _sample(leader, "vmd_leader") == 0
    with pytest.raises(SteppedDown) as stepped:
        leader.check()
    assert stepped.value.code == ExitCode.FENCED == 3
    await leader.release()


async def test_a_write_after_the_takeover_is_fenced_and_stores_nothing(url: str) -> None:
    clock = Clock()
    old = _leadership(url, clock)
    assert await old.acquire(asyncio.Event())
    store = Store.open(url, fence=old.fence)
    try:
        first = Batch()
        first.put_node(_node("node1"))
        store.write(first)  # ours: stored
        _expire(url)
        new = _leadership(url, clock, holder="daemon-b")
        assert await new.acquire(asyncio.Event())
        assert new.held is not None and new.held.epoch == 2
        assert _sample(new, "vmd_takeovers_total") == 1
        assert _sample(new, "vmd_leader_epoch") == 2
        # The old leader's clock says its lease is fine (it was frozen, say): the row says no.
        second = Batch()
        second.put_node(_node("node2"))
        with pytest.raises(SteppedDown) as stepped:
            store.write(second)
        assert stepped.value.code == 3
        assert store.get_node(NodeName("node1")) is not None
        assert store.get_node(NodeName("node2")) is None
        await new.release()
    finally:
        store.close()
        await old.release()


async def test_a_standby_waits_while_the_lease_is_live_and_stops_on_request(url: str) -> None:
    clock = Clock()
    active = _leadership(url, clock)
    assert await active.acquire(asyncio.Event())
    standby = _leadership(url, clock, holder="daemon-b")
    stop = asyncio.Event()
    waiting = asyncio.ensure_future(standby.acquire(stop))
    # Positive observation: the standby has looked at the row (its status says who holds it).
    for _ in range(200):
        if await _holder(url) == "daemon-a" and standby._conn is not None:
            break
        await asyncio.sleep(0.01)
    assert _sample(standby, "vmd_leader") == 0
    stop.set()
    assert await waiting is False
    assert standby.held is None
    await active.release()
    await standby.release()


async def test_a_clean_stop_hands_over_at_once(url: str) -> None:
    clock = Clock()
    active = _leadership(url, clock)
    assert await active.acquire(asyncio.Event())
    await active.release()
    standby = _leadership(url, clock, holder="daemon-b")
    assert await asyncio.wait_for(standby.acquire(asyncio.Event()), 5.0)
    assert standby.held is not None and standby.held.epoch == 2
    await standby.release()


async def _holder(url: str) -> str | None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        state = await lease.holding(conn)
    return None if state is None else state.holder


def _node(name: str) -> Node:
    return Node(NodeName(name), NodeStatus.ONLINE, 1.0)


async def test_the_bus_fence_refuses_a_publish_and_an_ack(
    bus_settings: Callable[..., BusSettings], amqp_channel: aio_pika.abc.AbstractChannel,
) -> None:
    """`Bus(fence=Leadership.check)`: past the deadline nothing is sent, nothing acked; the
    delivery in hand goes back to its queue when the connection closes."""
    queue = f"vmd.test-fence.{secrets.token_hex(4)}"
    await amqp_channel.declare_queue(queue, durable=False)
    lost = False

    def fence() -> None:
        if lost:
            _exit(ExitCode.FENCED)

    got: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()

    async def handler(delivery: Delivery) -> None:
        got.set_result(delivery)

    bus = Bus(bus_settings(), fence=fence)
    try:
        await bus.start()
        await bus.consume(queue, handler, prefetch=1)
        await bus.publish(Outgoing("", queue, b"{}"))  # the lease is ours: sent
        delivery = await asyncio.wait_for(got, 10)
        lost = True
        with pytest.raises(SteppedDown):
            await bus.publish(Outgoing("", queue, b"{}"))
        with pytest.raises(SteppedDown):
            await delivery.ack()
        assert not delivery.settled
    finally:
        await bus.close(drain_timeout=0.0)
    # Neither the refused publish nor an ack happened: the one message is back, ready.
    assert await message_count_settles(amqp_channel, queue, 1) == 1
    await amqp_channel.queue_delete(queue)
