"""The leadership lease (vmd.store.lease) on the real PostgreSQL of tests/support/postgres.py.

Each test creates its own database (a random name) and drops it. Time passing is never
waited for: a lease "expires" by moving its row's expiry into the past, as the database's
clock would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import psycopg
import pytest
from support.postgres import fresh_database

from vmd.store import Fenced, lease
from vmd.store.lease import Lease

Connect = Callable[[], Awaitable[psycopg.AsyncConnection]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """A fresh database with the lease table; `await connect()` opens an autocommit
    connection to it (closed at the end, before the database is dropped)."""
    opened: list[psycopg.AsyncConnection] = []
    with fresh_database("vmd_lease") as url:

        async def _connect() -> psycopg.AsyncConnection:
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
            opened.append(conn)
            return conn

        try:
            await lease.create(await _connect())
            yield _connect
        finally:
            for conn in reversed(opened):
                await conn.close()


async def _expire(conn: psycopg.AsyncConnection, name: str = lease.LEADERSHIP) -> None:
    # What the passing of the lease does to the row, without waiting for it.
    await conn.execute(f"UPDATE {lease.TABLE} SET expires = now() - interval '1 second' "
                       "WHERE name = %s", (name,))


class _Qmark:
    """The store's connection as a fence sees it (`?` placeholders), over a psycopg one."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor:
        return self._conn.execute(sql.replace("?", "%s"), params)


def _fence(conn: psycopg.Connection, held: Lease) -> None:
    # As the store runs it: first statement of a write transaction.
    with conn.transaction():
        lease.check(_Qmark(conn), held, 5.0)
        conn.execute("SELECT 1")


async def test_first_acquire_is_epoch_1_and_a_live_lease_is_not_taken(connect: Connect) -> None:
    a, b = await connect(), await connect()
    held = await lease.acquire(a, "daemon-a", 10.0)
    assert held == Lease(holder="daemon-a", epoch=1)
    assert await lease.acquire(b, "daemon-b", 10.0) is None
    state = await lease.holding(b)
    assert state is not None
    assert (state.holder, state.epoch, state.live) == ("daemon-a", 1, True)
    assert 9.0 < state.remaining <= 10.0


async def test_takeover_after_expiry_bumps_the_epoch_and_fences_the_old_holder(
    connect: Connect,
) -> None:
    a, b = await connect(), await connect()
    old = await lease.acquire(a, "daemon-a", 10.0)
    assert old is not None
    await _expire(b)
    new = await lease.acquire(b, "daemon-b", 10.0)
    assert new == Lease(holder="daemon-b", epoch=2)
    # The old holder can neither renew nor pass the fence; the new one can.
    assert not await lease.renew(a, old, 10.0)
    dsn = a.info.dsn
    with psycopg.connect(dsn) as sync:
        with pytest.raises(Fenced, match="held by daemon-b at epoch 2"):
            _fence(sync, old)
        _fence(sync, new)


async def test_renew_moves_the_expiry_and_keeps_the_epoch(connect: Connect) -> None:
    a = await connect()
    held = await lease.acquire(a, "daemon-a", 1.0)
    assert held is not None
    assert await lease.renew(a, held, 30.0)
    state = await lease.holding(a)
    assert state is not None and state.epoch == 1 and state.remaining > 29.0


async def test_an_expired_lease_is_not_renewed_even_if_nobody_took_it(connect: Connect) -> None:
    # The holder's local deadline ends before the row's expiry; past it, it must acquire
    # again (a new epoch) rather than revive an epoch others may have seen expire.
    a = await connect()
    held = await lease.acquire(a, "daemon-a", 10.0)
    assert held is not None
    await _expire(a)
    assert not await lease.renew(a, held, 10.0)
    again = await lease.acquire(a, "daemon-a", 10.0)
    assert again is not None and again.epoch == 2


async def test_release_frees_the_lease_at_once(connect: Connect) -> None:
    a, b = await connect(), await connect()
    held = await lease.acquire(a, "daemon-a", 60.0)
    assert held is not None
    assert await lease.release(a, held)
    new = await lease.acquire(b, "daemon-b", 60.0)
    assert new is not None and new.epoch == 2
    assert not await lease.release(a, held)  # not ours any more: releases nothing


async def test_racing_standbys_one_wins(connect: Connect) -> None:
    conns = [await connect() for _ in range(8)]
    first = await lease.acquire(conns[0], "daemon-0", 10.0)
    assert first is not None
    await _expire(conns[0])
    won = await asyncio.gather(*(lease.acquire(c, f"daemon-{i}", 10.0)
                                 for i, c in enumerate(conns[1:], 1)))
    winners = [w for w in won if w is not None]
    assert len(winners) == 1 and winners[0].epoch == 2


async def _until_expired(conn: psycopg.AsyncConnection) -> None:
    # The row's expiry passing in database time (a read: it takes no lock).
    for _ in range(500):
        cur = await conn.execute(f"SELECT bool_and(expires <= now()) FROM {lease.TABLE}")
        if (await cur.fetchone()) == (True,):
            return
        await asyncio.sleep(0.01)
    pytest.fail("the lease never expired")


async def _waits_on_a_lock(watcher: psycopg.AsyncConnection, pid: int) -> None:
    for _ in range(500):
        cur = await watcher.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,))
        if (await cur.fetchone()) == ("Lock",):
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"backend {pid} never waited on a lock")


async def test_a_takeover_ends_a_write_left_open_by_the_old_leader(connect: Connect) -> None:
    # The old leader passed its fence (share lock), wrote, and froze before its COMMIT; its
    # lease expired. The taker ends that session instead of waiting on the lock for as long
    # as the old one stays frozen: the open write rolls back and never happened.
    a, b, watcher = await connect(), await connect(), await connect()
    old = await lease.acquire(a, "daemon-a", 1.0)
    assert old is not None
    with psycopg.connect(a.info.dsn) as frozen:
        lease.check(_Qmark(frozen), old, 600.0)  # no idle timeout to rescue it
        frozen.execute(f"INSERT INTO {lease.TABLE} VALUES ('other', 'x', 1, now())")
        await _until_expired(watcher)
        new = await asyncio.wait_for(lease.acquire(b, "daemon-b", 10.0), 10.0)
        assert new is not None and new.epoch == 2
        with pytest.raises(psycopg.OperationalError):
            frozen.execute("COMMIT")
    cur = await watcher.execute(f"SELECT count(*) FROM {lease.TABLE} WHERE name = 'other'")
    assert await cur.fetchone() == (0,)


async def test_a_live_leaders_write_is_waited_for_not_ended(connect: Connect) -> None:
    # A standby polling while the leader writes waits for that write's share lock (a few
    # ms in real life), then finds the lease live; the write is never ended.
    a, b, watcher = await connect(), await connect(), await connect()
    held = await lease.acquire(a, "daemon-a", 10.0)
    assert held is not None
    with psycopg.connect(a.info.dsn) as writer:
        lease.check(_Qmark(writer), held, 600.0)
        cur = await b.execute("SELECT pg_backend_pid()")
        row = await cur.fetchone()
        assert row is not None
        polling = asyncio.ensure_future(lease.acquire(b, "daemon-b", 10.0))
        await _waits_on_a_lock(watcher, row[0])  # past its TERMINATE step
        writer.execute("SELECT 1")  # still alive
        writer.execute("COMMIT")
        assert await polling is None


async def test_fenced_without_a_row(connect: Connect) -> None:
    a = await connect()
    with psycopg.connect(a.info.dsn) as sync, pytest.raises(Fenced, match="no lease row"):
        _fence(sync, Lease(holder="daemon-a", epoch=1))


async def test_an_idle_write_transaction_is_ended_by_the_server(connect: Connect) -> None:
    # The fence's own bound: a transaction left idle after it (a leader frozen between two
    # statements outside a pipeline) is ended by the server after `idle_timeout`.
    a = await connect()
    held = await lease.acquire(a, "daemon-a", 10.0)
    assert held is not None
    with psycopg.connect(a.info.dsn) as frozen:
        frozen.execute("BEGIN")
        lease.check(_Qmark(frozen), held, 0.2)
        await asyncio.sleep(0.6)  # idle past the bound (the server's timer, not ours)
        with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
            frozen.execute("SELECT 1")
