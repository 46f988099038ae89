"""The seam between the store and its database: one connection type per backend.

Why: the store's modules (rows, history, outbox, restore, schema, store) are written once,
in the SQL both SQLite and PostgreSQL speak (`?` placeholders, `INSERT ... ON CONFLICT`,
`RETURNING`, partial indexes), against `Connection`. What differs lives here and in
`vmd.store.postgres`: how a write transaction starts, where the schema version is kept,
how a statement of a migration step is spelt, how a large read is streamed, and which
exception says "this row broke a constraint".

`SqliteConnection` passes every call straight to `sqlite3` (the default backend keeps its
speed and its behaviour); `vmd.store.postgres.PgConnection` translates placeholders once
per statement text and streams restores through a server-side cursor.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar, Protocol

from vmd.store.records import StoreError
from vmd.store.schema import MIGRATIONS, precheck

# STRICT tables and `sqlite_schema` need SQLite 3.37 (2021-11).
MIN_SQLITE = (3, 37, 0)


class Cursor(Protocol):
    """What the store reads from a statement's result (sqlite3's and psycopg's cursors)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection:
    """One open database connection as the store uses it, from one thread at a time.

    Statements use `?` placeholders. Transactions are explicit: `begin_write()` (or
    `begin_read()`), then `commit()` or `rollback()`; outside them every statement is its
    own transaction.
    """

    # "sqlite" or "postgresql": for `Store.settings()`, the tests and a fence.
    dialect: ClassVar[str]
    # The physical row address a bounded DELETE ... LIMIT picks rows by.
    row_id: ClassVar[str]
    # The driver's exception for a row that breaks a constraint (NOT NULL, CHECK, key).
    integrity_error: ClassVar[type[Exception]]
    # The driver's base exception (a failed open or migration is a `StoreError`).
    error: ClassVar[type[Exception]]
    # The driver's exceptions for a connection the server dropped or cannot serve (a
    # running store raises `StoreUnavailable` for them); none on SQLite.
    lost: ClassVar[tuple[type[Exception], ...]] = ()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        raise NotImplementedError

    def stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Any]:
        """The rows of a large read, without holding them all in memory at once (inside a
        transaction)."""
        return iter(self.execute(sql, params))

    def pipeline(self) -> contextlib.AbstractContextManager[object]:
        """Statements in this block may be sent without waiting for each one's answer;
        all are answered (and any error raised) by the end of the block. A read in it
        (`fetchone`) waits for everything before it."""
        return contextlib.nullcontext()

    def begin_write(self) -> None:
        raise NotImplementedError

    def begin_schema(self) -> None:
        """A write transaction that also excludes every other process's migration."""
        self.begin_write()

    def begin_read(self) -> None:
        """A read-only transaction: every statement in it sees one point in time."""
        raise NotImplementedError

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        """Roll back the open transaction, if there is one."""
        raise NotImplementedError

    @property
    def in_transaction(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # --- the schema version (vmd.store.schema) ------------------------------------

    def header(self) -> tuple[int, int]:
        """(application_id, schema version); (0, 0) for a database vmd never wrote."""
        raise NotImplementedError

    def set_header(self, application_id: int, version: int) -> None:
        raise NotImplementedError

    def has_tables(self) -> bool:
        """Whether the database holds any table (a foreign one, if the header is 0)."""
        raise NotImplementedError

    def ddl(self, statement: str) -> str:
        """A migration step's statement as this backend spells it."""
        return statement

    def info(self) -> dict[str, object]:
        """What this connection really runs with (for `Store.settings()`)."""
        raise NotImplementedError


class SqliteConnection(Connection):
    """A `sqlite3` connection in autocommit mode (isolation_level=None), WAL + FULL."""

    dialect = "sqlite"
    row_id = "rowid"
    integrity_error = sqlite3.IntegrityError
    error = sqlite3.Error

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.raw.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.raw.executemany(sql, rows)

    def begin_write(self) -> None:
        # IMMEDIATE takes the write lock now, so a second process waits here (busy_timeout)
        # instead of failing at its first write with a stale read.
        self.raw.execute("BEGIN IMMEDIATE")

    def begin_read(self) -> None:
        self.raw.execute("BEGIN")

    def rollback(self) -> None:
        if self.raw.in_transaction:
            self.raw.rollback()

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def close(self) -> None:
        self.raw.close()

    def header(self) -> tuple[int, int]:
        (app,) = self.raw.execute("PRAGMA application_id").fetchone()
        (version,) = self.raw.execute("PRAGMA user_version").fetchone()
        return int(app), int(version)

    def set_header(self, application_id: int, version: int) -> None:
        # PRAGMAs take no parameters; both values are integers we control.
        self.raw.execute(f"PRAGMA application_id = {int(application_id)}")
        self.raw.execute(f"PRAGMA user_version = {int(version)}")

    def has_tables(self) -> bool:
        (tables,) = self.raw.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        return bool(tables)

    def info(self) -> dict[str, object]:
        (mode,) = self.raw.execute("PRAGMA journal_mode").fetchone()
        (sync,) = self.raw.execute("PRAGMA synchronous").fetchone()
        names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
        return {"journal_mode": mode, "synchronous": names.get(sync, sync),
                "sqlite_version": sqlite3.sqlite_version}


def open_sqlite(name: str) -> SqliteConnection:
    """Open (creating if needed) the SQLite file `name`: WAL, synchronous=FULL.

    Durability: every commit fsyncs the write-ahead log before `COMMIT` returns, so a
    written batch survives a SIGKILL and an OS crash (as far as the disk honours fsync).
    NORMAL would only survive a process crash: in WAL mode it skips the fsync at commit and
    a power loss can roll back acknowledged transactions ("ack after the effect").
    """
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise StoreError(f"{name}: SQLite {sqlite3.sqlite_version} is too old (need 3.37)")
    created = not os.path.exists(name)
    try:
        # check_same_thread=False: the store is used from the event loop before it serves,
        # then from one writer thread (never two at once: Store._exclusive).
        raw = sqlite3.connect(name, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"{name}: cannot open store: {exc}") from None
    conn = SqliteConnection(raw)
    try:
        # Another process holding the write lock (a second vmd on the same file, a backup)
        # is waited for this long before the call fails with "database is locked".
        raw.execute("PRAGMA busy_timeout = 5000")
        _check_then_configure(conn, name)
    except sqlite3.Error as exc:
        raw.close()
        raise StoreError(f"{name}: cannot open store: {exc}") from None
    except BaseException:
        raw.close()
        raise
    if created:
        # SQLite fsyncs the directory for its WAL file but not for the database file it
        # created: without this an OS crash could lose the new file's name.
        _fsync_dir(os.path.dirname(os.path.abspath(name)))
    return conn


def _check_then_configure(conn: SqliteConnection, name: str) -> None:
    """Check the header before anything writes (WAL mode writes), then set WAL + FULL."""
    precheck(conn, name, MIGRATIONS)
    (mode,) = conn.raw.execute("PRAGMA journal_mode = WAL").fetchone()
    if str(mode).lower() != "wal":
        raise StoreError(f"{name}: cannot switch the store to WAL mode (got {mode!r})")
    # Per connection, not persistent: set on every open.
    conn.raw.execute("PRAGMA synchronous = FULL")
    (sync,) = conn.raw.execute("PRAGMA synchronous").fetchone()
    if sync != 2:
        raise StoreError(f"{name}: cannot set synchronous=FULL (got {sync!r})")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
