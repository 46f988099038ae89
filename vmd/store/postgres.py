"""The PostgreSQL backend: `PgConnection` over psycopg 3 (sync), opened from a URL.

Why psycopg 3 and not asyncpg: the store runs on one writer thread and every call is
synchronous (habit: the event loop never waits on the database, the writer thread does),
which is psycopg's model; asyncpg would need its own event loop in that thread. Measured on
the store's own write pattern (bench/store_drivers.py, docs/performance.md "Store
drivers"): a turn pipelined by psycopg (BEGIN..COMMIT in one round trip) was faster than
asyncpg's on 1-VM turns and as fast on 10-VM ones, slower only on 100-VM bursts; the thread
model decides.

How it differs from SQLite (vmd.store.dialect), and why:
- the connection is in autocommit mode and the store sends BEGIN/COMMIT itself, as it does
  on SQLite, so a transaction is exactly what the store's code says it is;
- a write transaction is sent in pipeline mode (`Connection.pipeline`): BEGIN, every
  statement of the turn and COMMIT go out together and the commit is one network round
  trip (two with a fence, whose read waits for its answer), instead of one per statement;
- `?` placeholders are rewritten to psycopg's `%s` once per statement text (cached);
  psycopg prepares a statement on the server after a few runs of the same text;
- the schema version lives in the one-row table `vmd_schema` (no PRAGMA); a migration takes
  a transaction-scoped advisory lock, so two daemons starting together on a new database
  (a leader and a standby) migrate it once;
- a restore streams the VMs through a server-side cursor, `STREAM_ROWS` rows at a time, so
  a million VMs are never all in the client's memory twice;
- durability is the server's: `COMMIT` returns once the WAL is flushed (synchronous_commit,
  reported by `Store.settings()`), and on the synchronous standbys it is configured with.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from vmd.store.dialect import Connection, Cursor
from vmd.store.records import StoreError
from vmd.store.schema import APPLICATION_ID, MIGRATIONS, precheck
from vmd.store.target import PostgresUrl

STREAM_ROWS = 10_000
# libpq options set when the URL does not set them. connect_timeout: libpq's default waits
# forever at open. The TCP ones bound how long a call can hang on a server that vanished
# without closing the connection (a partition, a dead host), which would otherwise be the
# kernel's retransmission timeout (~15 min) with the writer thread stuck in it: 10 s
# unacknowledged data, or an idle connection unanswered for 5 + 3 x 2 s, fails the call
# with OperationalError.
CONNECT_TIMEOUT = 10
LIBPQ_DEFAULTS: dict[str, Any] = {
    "connect_timeout": CONNECT_TIMEOUT,
    "tcp_user_timeout": 10_000,  # ms
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}

# SQLite's spelling of the schema steps -> PostgreSQL's (vmd.store.schema).
_DDL = (
    (re.compile(r"\)\s*STRICT\s*$"), ")"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"(?<![\"\w])user\b"), '"user"'),  # a reserved word in PostgreSQL
)
_HEADER_TABLE = (
    "CREATE TABLE IF NOT EXISTS vmd_schema ("
    "one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), "
    "application_id BIGINT NOT NULL, version BIGINT NOT NULL)"
)


class PgConnection(Connection):
    """A psycopg 3 connection in autocommit mode; the store sends BEGIN/COMMIT itself."""

    dialect = "postgresql"
    row_id = "ctid"
    integrity_error = psycopg.errors.IntegrityError
    error = psycopg.Error
    # A restart, a terminated session (57P01), a network failure: the connection is gone.
    lost = (psycopg.OperationalError,)

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn
        self._sql: dict[str, str] = {}

    def _translate(self, sql: str) -> str:
        text = self._sql.get(sql)
        if text is None:
            text = self._sql[sql] = sql.replace("%", "%%").replace("?", "%s")
        return text

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.raw.execute(self._translate(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        # psycopg pipelines executemany: one network round trip for all the rows.
        with self.raw.cursor() as cursor:
            cursor.executemany(self._translate(sql), rows)

    def stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Any]:
        with self.raw.cursor(name="vmd_stream") as cursor:
            cursor.itersize = STREAM_ROWS
            cursor.execute(self._translate(sql), params)
            yield from cursor

    def pipeline(self) -> contextlib.AbstractContextManager[object]:
        return self.raw.pipeline()

    def begin_write(self) -> None:
        self.raw.execute("BEGIN")

    def begin_schema(self) -> None:
        self.raw.execute("BEGIN")
        # Held to COMMIT: a second process migrating the same database waits here.
        self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (APPLICATION_ID,))

    def begin_read(self) -> None:
        self.raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def rollback(self) -> None:
        # A broken connection has no transaction left to end (and ROLLBACK would raise
        # over the error that broke it).
        if self.in_transaction and not self.raw.broken:
            self.raw.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status in (
            TransactionStatus.INTRANS, TransactionStatus.INERROR, TransactionStatus.ACTIVE)

    def close(self) -> None:
        self.raw.close()

    def header(self) -> tuple[int, int]:
        # The catalog, not to_regclass: a name lookup may answer from this session's
        # cache, which does not see a table another session created while we waited for
        # the migration lock (found by a test opening a new database four times at once).
        (exists,) = _one(self.raw.execute(
            "SELECT EXISTS (SELECT FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename = 'vmd_schema')"))
        if not exists:
            return 0, 0
        row = self.raw.execute("SELECT application_id, version FROM vmd_schema").fetchone()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def set_header(self, application_id: int, version: int) -> None:
        self.raw.execute(_HEADER_TABLE)
        self.raw.execute(
            "INSERT INTO vmd_schema (application_id, version) VALUES (%s, %s) "
            "ON CONFLICT (one) DO UPDATE SET application_id = excluded.application_id, "
            "version = excluded.version", (application_id, version))

    def has_tables(self) -> bool:
        # vmd_* tables are vmd's own (vmd_schema; vmd_lease, which a daemon may create
        # before its store is first migrated: vmd.store.lease).
        (tables,) = _one(self.raw.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename NOT LIKE 'vmd\\_%'"))
        return bool(tables)

    def ddl(self, statement: str) -> str:
        for pattern, replacement in _DDL:
            statement = pattern.sub(replacement, statement.strip())
        return statement

    def info(self) -> dict[str, object]:
        (sync,) = _one(self.raw.execute("SHOW synchronous_commit"))
        (standbys,) = _one(self.raw.execute("SHOW synchronous_standby_names"))
        libpq = self.raw.info.get_parameters()
        return {"synchronous_commit": sync, "synchronous_standby_names": standbys,
                "server_version": self.raw.info.parameter_status("server_version"),
                "psycopg_version": psycopg.__version__,
                **{key: libpq.get(key) for key in LIBPQ_DEFAULTS}}


def _one(cursor: Cursor) -> tuple[Any, ...]:
    row: tuple[Any, ...] = cursor.fetchone()
    return row


def open_postgres(where: PostgresUrl) -> PgConnection:
    """Connect to the database `where` names and check its header (not yet migrated)."""
    options: dict[str, Any] = {"application_name": "vmd"}
    options.update((key, value) for key, value in LIBPQ_DEFAULTS.items()
                   if f"{key}=" not in where.url)
    try:
        raw = psycopg.connect(where.url, autocommit=True, **options)
    except psycopg.Error as exc:
        raise StoreError(f"{where.safe}: cannot open store: {_line(exc)}") from None
    conn = PgConnection(raw)
    try:
        precheck(conn, where.safe, MIGRATIONS)
    except psycopg.Error as exc:
        raw.close()
        raise StoreError(f"{where.safe}: cannot open store: {_line(exc)}") from None
    except BaseException:
        raw.close()
        raise
    return conn


def _line(exc: Exception) -> str:
    """libpq's messages run over several lines: the first says what went wrong."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
