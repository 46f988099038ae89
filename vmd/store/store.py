"""`Store`: vmd's durable state in one SQLite file (VMs, nodes, tasks, idempotency keys,
the outbox and the power history).

Durability: the file is in WAL mode with `synchronous=FULL`, so every commit fsyncs the
write-ahead log before `COMMIT` returns. When `write()` returns, the batch survives a
SIGKILL of the process and a crash of the OS (as far as the disk honours fsync). NORMAL
would only survive a process crash: in WAL mode it skips the fsync at commit and a power
loss can roll back acknowledged transactions, which breaks "ack after the effect".

Threads: one connection, opened with `check_same_thread=False`, so the store may be used
from the event loop thread or from one dedicated writer thread (e.g. a
`ThreadPoolExecutor(max_workers=1)` that runs every store call). It must never be used by
two threads at the same time; a public method entered while another is running in a
different thread raises `RuntimeError` (an internal bug, not a wait).

Time is always passed in (`now`), never read here, so retention is tested without sleeping.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from types import TracebackType

from vmd.fsm.history import HistoryEntry
from vmd.model import Node, NodeName, Task, TaskId, Vm, VmUuid
from vmd.store import history, outbox
from vmd.store.batch import Batch
from vmd.store.records import RETENTION, Fleet, IdempotencyRecord, Purged, StoreError
from vmd.store.restore import load_fleet
from vmd.store.rows import (
    IDEMPOTENCY,
    NODES,
    TASKS,
    VMS,
    idempotency_from_row,
    node_from_row,
    task_from_row,
    vm_from_row,
)
from vmd.store.schema import MIGRATIONS, check_header, header, migrate

# STRICT tables and `sqlite_schema` need SQLite 3.37 (2021-11).
MIN_SQLITE = (3, 37, 0)
# The power history's defaults (`[daemon] history_keep`, `history_retention`).
HISTORY_KEEP = 100
HISTORY_RETENTION = 30 * 86400.0


class Store:
    """vmd's durable state. Open with `Store.open(path)`; close with `close()` or `with`.

    One connection (`check_same_thread=False`): call it from any ONE thread at a time, e.g.
    the event loop before it starts serving, then a single dedicated writer thread.
    """

    def __init__(self, conn: sqlite3.Connection, path: str, *, retention: float,
                 history_keep: int = HISTORY_KEEP,
                 history_retention: float = HISTORY_RETENTION) -> None:
        """Wrap an already opened and migrated connection; use `Store.open` instead."""
        self._conn = conn
        self.path = path
        self.retention = retention
        self.history_keep = history_keep
        self.history_retention = history_retention
        self._busy = threading.Lock()

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, retention: float = RETENTION,
             history_keep: int = HISTORY_KEEP,
             history_retention: float = HISTORY_RETENTION) -> Store:
        """Open (creating and migrating if needed) the store file at `path`.

        `history_keep` entries of each VM's power history are kept (0: none is written),
        none older than `history_retention` seconds once `purge_history` ran.

        Raises `StoreError` with a one-line message for a file that cannot be opened, is not
        a vmd store, or has a schema newer than this code.
        """
        name = os.fspath(path)
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreError(f"{name}: SQLite {sqlite3.sqlite_version} is too old (need 3.37)")
        created = not os.path.exists(name)
        try:
            conn = sqlite3.connect(name, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"{name}: cannot open store: {exc}") from None
        try:
            _configure(conn, name)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"{name}: cannot open store: {exc}") from None
        except BaseException:
            conn.close()
            raise
        if created:
            # SQLite fsyncs the directory for its WAL file but not for the database file
            # it created: without this an OS crash could lose the new file's name.
            _fsync_dir(os.path.dirname(os.path.abspath(name)))
        return cls(conn, name, retention=retention, history_keep=history_keep,
                   history_retention=history_retention)

    def close(self) -> None:
        """Close the connection (SQLite checkpoints the WAL into the main file)."""
        with self._exclusive():
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- writing -------------------------------------------------------------------

    def write(self, batch: Batch) -> None:
        """Commit every change in `batch` in one transaction; durable when this returns.

        Either the whole batch is stored or (on an exception) none of it. An empty batch
        does nothing.
        """
        with self._exclusive():
            if not len(batch):
                return
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                for changes in batch.changes():
                    if changes.deletes:
                        conn.executemany(changes.table.delete_sql, changes.deletes)
                    if changes.puts:
                        conn.executemany(changes.table.upsert_sql, changes.puts.values())
                if batch.outbox_deletes:
                    conn.executemany(outbox.DELETE_SQL, batch.outbox_deletes)
                if batch.outbox_puts:
                    conn.executemany(outbox.INSERT_SQL, batch.outbox_puts)
                if batch.history and self.history_keep:
                    conn.executemany(history.INSERT_SQL, batch.history)
                    conn.executemany(history.TRIM_SQL,
                                     history.trim_keys(batch.history, self.history_keep))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise

    def put_vm(self, vm: Vm) -> None:
        batch = Batch()
        batch.put_vm(vm)
        self.write(batch)

    def delete_vm(self, uuid: VmUuid) -> None:
        batch = Batch()
        batch.delete_vm(uuid)
        self.write(batch)

    def put_node(self, node: Node) -> None:
        batch = Batch()
        batch.put_node(node)
        self.write(batch)

    def delete_node(self, name: NodeName) -> None:
        batch = Batch()
        batch.delete_node(name)
        self.write(batch)

    def put_task(self, task: Task) -> None:
        batch = Batch()
        batch.put_task(task)
        self.write(batch)

    def delete_task(self, task_id: TaskId) -> None:
        batch = Batch()
        batch.delete_task(task_id)
        self.write(batch)

    def put_idempotency(self, record: IdempotencyRecord) -> None:
        batch = Batch()
        batch.put_idempotency(record)
        self.write(batch)

    def delete_idempotency(self, user: str, message_id: str) -> None:
        batch = Batch()
        batch.delete_idempotency(user, message_id)
        self.write(batch)

    def count_redelivery(self, digest: bytes, now: float) -> int:
        """One more redelivery of the delivery with this digest (vmd.daemon.poison); durable
        when this returns. Returns how often it has been seen redelivered (1 the first time).
        Rows first seen more than `retention` ago go in the same transaction (a handful:
        only deliveries in hand at a crash or a lost connection are counted)."""
        with self._exclusive():
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM redeliveries WHERE first_seen < ?",
                             (now - self.retention,))
                (count,) = conn.execute(
                    "INSERT INTO redeliveries (digest, count, first_seen) VALUES (?, 1, ?) "
                    "ON CONFLICT (digest) DO UPDATE SET count = count + 1 RETURNING count",
                    (digest, now)).fetchone()
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise
        return int(count)

    def purge(self, now: float) -> Purged:
        """Delete tasks that ended, and idempotency keys first seen, more than `retention` ago.

        Pending tasks are never purged. Returns how many rows went.
        """
        cutoff = now - self.retention
        with self._exclusive():
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                tasks = conn.execute(
                    "DELETE FROM tasks WHERE ended IS NOT NULL AND ended < ?", (cutoff,)
                ).rowcount
                keys = conn.execute("DELETE FROM idempotency WHERE created < ?", (cutoff,)).rowcount
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise
        return Purged(tasks=tasks, idempotency=keys)

    def purge_history(self, now: float, limit: int = history.PURGE_BATCH) -> int:
        """Delete up to `limit` history entries older than `history_retention` (one short
        transaction); returns how many went. Call again while it returns `limit`."""
        cutoff = now - self.history_retention
        with self._exclusive():
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                n = history.purge(conn, cutoff, limit)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise
        return n

    # --- reading -------------------------------------------------------------------

    def read_history(self, vm_uuid: VmUuid, limit: int, before: int | None = None
                ) -> list[HistoryEntry]:
        """Up to `limit` entries of a VM's power history, newest first; with `before`,
        only those with a smaller seq."""
        with self._exclusive():
            return history.read(self._conn, vm_uuid, limit, before)

    def load_fleet(self, now: float) -> Fleet:
        """Everything the daemon keeps in memory: all VMs and nodes, pending tasks, and the
        idempotency keys still live at `now`. See `vmd.store.restore` for the memory layout.
        """
        with self._exclusive():
            return load_fleet(self._conn, live_since=now - self.retention)

    def load_outbox(self) -> list[outbox.OutboxMessage]:
        """The outbox messages not yet deleted (maybe never published), in id order."""
        with self._exclusive():
            return [outbox.outbox_from_row(row) for row in self._conn.execute(outbox.SELECT_SQL)]

    def get_vm(self, uuid: VmUuid) -> Vm | None:
        row = self._get(VMS.get_sql, (uuid,))
        return None if row is None else vm_from_row(row)

    def get_node(self, name: NodeName) -> Node | None:
        row = self._get(NODES.get_sql, (name,))
        return None if row is None else node_from_row(row)

    def get_task(self, task_id: TaskId) -> Task | None:
        """A task, pending or ended (ended ones until `purge` removes them)."""
        row = self._get(TASKS.get_sql, (task_id,))
        return None if row is None else task_from_row(row)

    def get_idempotency(self, user: str, message_id: str, now: float) -> IdempotencyRecord | None:
        """The record for `(user, message_id)` if first seen within `retention` of `now`."""
        row = self._get(IDEMPOTENCY.get_sql, (user, message_id))
        if row is None:
            return None
        record = idempotency_from_row(row)
        return record if record.created >= now - self.retention else None

    def settings(self) -> dict[str, object]:
        """What this connection really runs with (for the startup log and the tests)."""
        with self._exclusive():
            conn = self._conn
            (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
            (sync,) = conn.execute("PRAGMA synchronous").fetchone()
            app, version = header(conn)
        names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
        return {
            "path": self.path,
            "journal_mode": mode,
            "synchronous": names.get(sync, sync),
            "schema_version": version,
            "application_id": app,
            "sqlite_version": sqlite3.sqlite_version,
        }

    def _get(self, sql: str, key: tuple[str, ...]) -> tuple[object, ...] | None:
        with self._exclusive():
            row: tuple[object, ...] | None = self._conn.execute(sql, key).fetchone()
            return row

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        # Not a lock to wait on: a second thread inside the store is a bug in the caller.
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(f"{self.path}: Store used by two threads at once")
        try:
            yield
        finally:
            self._busy.release()


def _configure(conn: sqlite3.Connection, path: str) -> None:
    """Check the header before anything writes, then set WAL + FULL and migrate."""
    # Another process holding the write lock (a second vmd on the same file, a backup)
    # is waited for this long before the call fails with "database is locked".
    conn.execute("PRAGMA busy_timeout = 5000")
    check_header(conn, path, MIGRATIONS)
    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if str(mode).lower() != "wal":
        raise StoreError(f"{path}: cannot switch the store to WAL mode (got {mode!r})")
    # Per connection, not persistent: set on every open.
    conn.execute("PRAGMA synchronous = FULL")
    (sync,) = conn.execute("PRAGMA synchronous").fetchone()
    if sync != 2:
        raise StoreError(f"{path}: cannot set synchronous=FULL (got {sync!r})")
    migrate(conn, path, MIGRATIONS)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
