"""The leadership lease of the daemons that share one PostgreSQL store (docs/ha.md).

One row per leadership (`name`: "daemon" today, one per shard on the scale path) holds the
holder's id, an epoch and an expiry. Every time is the database's (`now()`), never a
daemon's clock: the holders' clocks may disagree, the database's is the one they share.

- `acquire`: take the row if it is free (no row yet, or its expiry passed, or released),
  bumping the epoch. One statement (`INSERT ... ON CONFLICT DO UPDATE ... WHERE`), so two
  standbys racing for it cannot both win: the row lock orders them and the second one's
  `WHERE` sees the first one's fresh expiry.
- `renew`: push the expiry on while the holder and epoch are still ours and unexpired.
- `release`: a clean stop lets the next one take over at once instead of after the lease.
- `check` (the fence): the first statement of every write transaction of the leader,
  `SELECT ... FOR SHARE` on the row. A share lock conflicts with the `UPDATE` of a taker,
  so a write already past its fence either commits before the takeover or, left open
  past the expiry (its leader frozen mid-write), is ended by the taker and rolled back;
  a write that starts after the takeover sees the new holder and epoch and raises
  `Fenced`: the old leader cannot write once it has lost the row, whatever its clock says.

Why a row and not `pg_advisory_lock`: docs/ha.md, "Lease row or advisory lock".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg

from vmd.store.records import Fenced

TABLE = "vmd_lease"
LEADERSHIP = "daemon"  # the one leadership of a single active daemon (shard path: "shard-N")

CREATE_SQL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch BIGINT NOT NULL CHECK (epoch > 0),
    expires TIMESTAMPTZ NOT NULL
)"""

# Serialises the CREATE of concurrent first starts (CREATE TABLE IF NOT EXISTS alone can
# fail on the catalog's unique index when two sessions create at once). Any fixed key.
_CREATE_LOCK = 0x766D644C  # 'vmdL'

ACQUIRE_SQL = f"""
INSERT INTO {TABLE} AS l (name, holder, epoch, expires)
VALUES (%(name)s, %(holder)s, 1, now() + make_interval(secs => %(lease)s))
ON CONFLICT (name) DO UPDATE
    SET holder = EXCLUDED.holder, epoch = l.epoch + 1, expires = EXCLUDED.expires
    WHERE l.expires <= now()
RETURNING epoch"""

# Before a takeover: end the sessions whose transaction began while the expired lease was
# still valid and that still hold a lock on the lease table. That is the previous holder
# frozen or cut off in the middle of a write: its fence's share lock would block the
# takeover for as long as it stays frozen (its backend waits for the client, "active" in
# the middle of a pipeline, where no idle timeout applies). Ended, its transaction rolls
# back whole: the write never happened. A new leader's transactions start after it took
# the row, so after this expiry, and are never ended here; after a `release`
# (`-infinity`) nothing is.
TERMINATE_SQL = f"""
SELECT count(pg_terminate_backend(a.pid))
FROM pg_stat_activity a JOIN {TABLE} l ON l.name = %(name)s
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
  AND l.expires <= now() AND a.xact_start < l.expires
  AND EXISTS (SELECT 1 FROM pg_locks k
              WHERE k.pid = a.pid AND k.granted AND k.relation = '{TABLE}'::regclass)"""

RENEW_SQL = f"""
UPDATE {TABLE} SET expires = now() + make_interval(secs => %(lease)s)
WHERE name = %(name)s AND holder = %(holder)s AND epoch = %(epoch)s AND expires > now()
RETURNING epoch"""

# `-infinity`: free at once for the next `acquire`, which still bumps the epoch.
RELEASE_SQL = f"""
UPDATE {TABLE} SET expires = '-infinity'
WHERE name = %(name)s AND holder = %(holder)s AND epoch = %(epoch)s"""

# `?`: run through the store's own connection (vmd.store.dialect), inside its transaction.
# The same statement bounds how long this transaction may sit idle holding the share lock
# (`idle_in_transaction_session_timeout`, for this transaction only): a leader frozen in
# the middle of a write (SIGSTOP between two statements) would otherwise block the
# takeover's UPDATE for as long as it is frozen. Past the bound the server ends the
# session, the write is rolled back whole, and the lock is gone.
FENCE_SQL = (f"SELECT holder, epoch, set_config('idle_in_transaction_session_timeout', ?, "
             f"true) FROM {TABLE} WHERE name = ? FOR SHARE")

HOLDER_SQL = f"""
SELECT holder, epoch, expires > now(), extract(epoch FROM expires - now())
FROM {TABLE} WHERE name = %(name)s"""


class FenceConn(Protocol):
    """What `check` needs: the store's connection as its fence gets it (`vmd.store.Fence`:
    `execute` with `?` placeholders, returning a cursor with `fetchone`)."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...


@dataclass(frozen=True, slots=True)
class Holding:
    """Who holds a leadership, as the database sees it now."""

    holder: str
    epoch: int
    live: bool  # the expiry is still ahead
    remaining: float  # seconds until the expiry (negative once passed)


@dataclass(frozen=True, slots=True)
class Lease:
    """One holder's claim: the leadership `name`, our `holder` id and the `epoch` we won."""

    holder: str
    epoch: int
    name: str = LEADERSHIP

    def params(self) -> dict[str, object]:
        return {"name": self.name, "holder": self.holder, "epoch": self.epoch}


def check(conn: FenceConn, lease: Lease, idle_timeout: float) -> None:
    """The fence: raise `Fenced` unless `lease` still holds the row; run it first in a
    write transaction (the share lock it takes lasts until that transaction ends, or
    until it sits idle for `idle_timeout` seconds: the server then ends the session)."""
    millis = str(max(1, round(idle_timeout * 1000)))
    row = conn.execute(FENCE_SQL, (millis, lease.name)).fetchone()
    if row is None:
        raise Fenced(f"leadership {lease.name!r}: no lease row (epoch {lease.epoch} is not ours)")
    holder, epoch, _ = row
    if holder != lease.holder or int(epoch) != lease.epoch:
        raise Fenced(f"leadership {lease.name!r} is held by {holder} at epoch {epoch}; "
                     f"ours was epoch {lease.epoch}")


class AsyncConn(Protocol):
    """What the leader loop's own connection must offer (psycopg's `AsyncConnection` in
    autocommit mode: each statement below is its own transaction)."""

    async def execute(self, query: Any, params: Any = ...) -> Any: ...


# What a lease call raises when the database is away, slow or restarting: the caller
# retries (a standby) or counts down to its local deadline (the leader).
ERRORS: tuple[type[Exception], ...] = (psycopg.Error, OSError, TimeoutError)


Connection = psycopg.AsyncConnection


async def connect(conninfo: str) -> Connection:
    """A connection of the lease's own (autocommit: each call is one transaction), with
    the table created if missing. Never the store's connection: a long write turn there
    must not delay a renewal."""
    conn = await psycopg.AsyncConnection.connect(
        conninfo, autocommit=True, application_name="vmd-daemon lease")
    try:
        await create(conn)
    except BaseException:
        await conn.close()
        raise
    return conn


async def create(conn: AsyncConn) -> None:
    """Create the lease table if it is missing (idempotent, safe for concurrent starts)."""
    await conn.execute("SELECT pg_advisory_lock(%s)", (_CREATE_LOCK,))
    try:
        await conn.execute(CREATE_SQL)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_CREATE_LOCK,))


async def acquire(conn: AsyncConn, holder: str, lease: float,
                  name: str = LEADERSHIP) -> Lease | None:
    """Take leadership `name` for `lease` seconds if it is free; None while another holds
    it. Each success has a new epoch, one more than the last one given. An expired
    holder's transactions still open are ended first (`TERMINATE_SQL`)."""
    await conn.execute(TERMINATE_SQL, {"name": name})
    cur = await conn.execute(ACQUIRE_SQL, {"name": name, "holder": holder, "lease": lease})
    row = await cur.fetchone()
    return None if row is None else Lease(holder=holder, epoch=int(row[0]), name=name)


async def renew(conn: AsyncConn, held: Lease, lease: float) -> bool:
    """Push the expiry `lease` seconds past the database's now; False when the lease is
    not ours any more (taken, or expired)."""
    cur = await conn.execute(RENEW_SQL, {**held.params(), "lease": lease})
    return await cur.fetchone() is not None


async def release(conn: AsyncConn, held: Lease) -> bool:
    """Give the leadership up now (a clean stop); False when it was not ours any more."""
    cur = await conn.execute(RELEASE_SQL, held.params())
    return bool(cur.rowcount)


async def holding(conn: AsyncConn, name: str = LEADERSHIP) -> Holding | None:
    """Who holds `name` (for logs, the standby's status and the tests); None: nobody yet."""
    cur = await conn.execute(HOLDER_SQL, {"name": name})
    row = await cur.fetchone()
    if row is None:
        return None
    holder, epoch, live, remaining = row
    return Holding(holder=holder, epoch=int(epoch), live=bool(live), remaining=float(remaining))
