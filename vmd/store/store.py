"""`Store`: vmd's durable state (VMs, nodes, tasks, idempotency keys, the outbox and the
power history) in one SQLite file or one PostgreSQL database.

The backend is chosen by what `Store.open` is given (vmd.store.target): a path (or a
`sqlite:` URL) is a SQLite file in WAL mode with `synchronous=FULL` (vmd.store.dialect); a
`postgresql://` URL is a database on a server (vmd.store.postgres). Everything above this
class is the same for both: `write()` commits a batch in one transaction and returns when
it is durable (SQLite fsyncs its WAL; PostgreSQL's commit waits for its WAL flush, and for
the synchronous standbys its server is configured with), so the batch survives a SIGKILL
of the process and a crash of the OS.

Threads: one connection, used from the event loop thread or from one dedicated writer
thread (e.g. a `ThreadPoolExecutor(max_workers=1)` that runs every store call). It must
never be used by two threads at the same time; a public method entered while another is
running in a different thread raises `RuntimeError` (an internal bug, not a wait).

Time is always passed in (`now`), never read here, so retention is tested without sleeping.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from types import TracebackType

from vmd.fsm.history import HistoryEntry
from vmd.model import Node, NodeName, Task, TaskId, Vm, VmUuid
from vmd.store import history, outbox
from vmd.store.batch import Batch
from vmd.store.dialect import Connection, open_sqlite
from vmd.store.records import (
    RETENTION,
    Fleet,
    IdempotencyRecord,
    Purged,
    StoreError,
    StoreUnavailable,
)
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
from vmd.store.schema import MIGRATIONS, migrate
from vmd.store.target import PostgresUrl, parse_target

# The power history's defaults (`[daemon] history_keep`, `history_retention`).
HISTORY_KEEP = 100
HISTORY_RETENTION = 30 * 86400.0

# Run first inside every write transaction (see `Store`); raises `Fenced` to refuse it.
Fence = Callable[[Connection], None]


class Store:
    """vmd's durable state. Open with `Store.open(target)`; close with `close()` or `with`.

    One connection: call it from any ONE thread at a time, e.g. the event loop before it
    starts serving, then a single dedicated writer thread.

    The fence (`fence=` of `open`, or the `fence` attribute, set or cleared at any time
    from the store's thread): a callable `fence(conn)` run FIRST inside every write
    transaction (`write` with a non-empty batch, `count_redelivery`, `purge`,
    `purge_history`; not the migration at open, nor reads), before any row is touched.
    `conn` is the store's `vmd.store.dialect.Connection`: `conn.execute(sql, params)` with
    `?` placeholders returns a cursor (`fetchone()`), `conn.dialect` says "sqlite" or
    "postgresql". To refuse the write the fence raises `Fenced` (e.g. after
    `SELECT epoch FROM lease ... FOR SHARE` found another leader's epoch): the transaction
    is rolled back, nothing of it is stored, and the exception reaches the caller as it
    was raised. On PostgreSQL a row lock the fence takes is held to the commit, so a new
    leader's epoch bump waits for this transaction or this transaction sees the new epoch.
    """

    def __init__(self, conn: Connection, path: str, *, retention: float,
                 history_keep: int = HISTORY_KEEP,
                 history_retention: float = HISTORY_RETENTION,
                 fence: Fence | None = None) -> None:
        """Wrap an already opened and migrated connection; use `Store.open` instead."""
        self._conn = conn
        # The file, or the URL without its password: safe to log.
        self.path = path
        self.retention = retention
        self.history_keep = history_keep
        self.history_retention = history_retention
        self.fence = fence
        self._busy = threading.Lock()

    @classmethod
    def open(cls, target: str | os.PathLike[str], *, retention: float = RETENTION,
             history_keep: int = HISTORY_KEEP,
             history_retention: float = HISTORY_RETENTION,
             fence: Fence | None = None) -> Store:
        """Open (creating and migrating if needed) the store `target` names: a SQLite file
        (a path, or `sqlite:PATH`) or a PostgreSQL database (`postgresql://...`).

        `history_keep` entries of each VM's power history are kept (0: none is written),
        none older than `history_retention` seconds once `purge_history` ran.

        Raises `StoreError` with a one-line message for a store that cannot be opened (a
        missing directory, a server that does not answer), is not a vmd store, or has a
        schema newer than this code.
        """
        where = parse_target(target)
        conn: Connection
        if isinstance(where, PostgresUrl):
            from vmd.store.postgres import open_postgres  # psycopg only when it is used

            name = where.safe
            conn = open_postgres(where)
        else:
            name = os.fspath(where)
            conn = open_sqlite(name)
        try:
            migrate(conn, name, MIGRATIONS)
        except conn.error as exc:
            # E.g. a read-only file, or a database user without CREATE: the operator's.
            conn.close()
            first = next((t for t in str(exc).splitlines() if t.strip()), type(exc).__name__)
            raise StoreError(f"{name}: cannot open store: {first.strip()}") from None
        except BaseException:
            conn.close()
            raise
        return cls(conn, name, retention=retention, history_keep=history_keep,
                   history_retention=history_retention, fence=fence)

    @property
    def dialect(self) -> str:
        """"sqlite" or "postgresql"."""
        return self._conn.dialect

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

        Either the whole batch is stored or (on an exception, `Fenced` included) none of
        it. An empty batch does nothing (and runs no fence).
        """
        with self._exclusive():
            if not len(batch):
                return
            self._write(batch)

    def _write(self, batch: Batch) -> None:
        with self._transaction(exclusive=False, pipelined=True) as conn:
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

    def count_redelivery(self, digest: bytes, now: float) -> int:
        """One more redelivery of the delivery with this digest (vmd.daemon.poison); durable
        when this returns. Returns how often it has been seen redelivered (1 the first time).
        Rows first seen more than `retention` ago go in the same transaction (a handful:
        only deliveries in hand at a crash or a lost connection are counted)."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM redeliveries WHERE first_seen < ?",
                         (now - self.retention,))
            (count,) = conn.execute(
                "INSERT INTO redeliveries (digest, count, first_seen) VALUES (?, 1, ?) "
                "ON CONFLICT (digest) DO UPDATE SET count = redeliveries.count + 1 "
                "RETURNING count",
                (digest, now)).fetchone()
        return int(count)

    def purge(self, now: float) -> Purged:
        """Delete tasks that ended, and idempotency keys first seen, more than `retention` ago.

        Pending tasks are never purged. Returns how many rows went.
        """
        cutoff = now - self.retention
        with self._transaction() as conn:
            tasks = conn.execute(
                "DELETE FROM tasks WHERE ended IS NOT NULL AND ended < ?", (cutoff,)
            ).rowcount
            keys = conn.execute("DELETE FROM idempotency WHERE created < ?", (cutoff,)).rowcount
        return Purged(tasks=tasks, idempotency=keys)

    def purge_history(self, now: float, limit: int = history.PURGE_BATCH) -> int:
        """Delete up to `limit` history entries older than `history_retention` (one short
        transaction); returns how many went. Call again while it returns `limit`."""
        cutoff = now - self.history_retention
        with self._transaction() as conn:
            return history.purge(conn, cutoff, limit)

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
            app, version = conn.header()
            info = conn.info()
        return {"path": self.path, "backend": conn.dialect, "schema_version": version,
                "application_id": app, **info}

    def _get(self, sql: str, key: tuple[str, ...]) -> tuple[object, ...] | None:
        with self._exclusive():
            row: tuple[object, ...] | None = self._conn.execute(sql, key).fetchone()
            return row

    @contextlib.contextmanager
    def _transaction(self, *, exclusive: bool = True,
                     pipelined: bool = False) -> Iterator[Connection]:
        """One write transaction, the fence first; committed when the block ends, rolled
        back (and the exception raised on) when it raises. `exclusive=False`: the caller
        already holds `_exclusive`. `pipelined`: BEGIN .. COMMIT go out in one pipeline
        on PostgreSQL (vmd.store.postgres), for a block that reads no `rowcount` (an error
        of any statement is raised by the end of the block at the latest)."""
        with self._exclusive() if exclusive else contextlib.nullcontext():
            conn = self._conn
            try:
                with conn.pipeline() if pipelined else contextlib.nullcontext():
                    conn.begin_write()
                    if self.fence is not None:
                        self.fence(conn)
                    yield conn
                    conn.commit()
            except BaseException:
                conn.rollback()
                raise

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        # Not a lock to wait on: a second thread inside the store is a bug in the caller.
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(f"{self.path}: Store used by two threads at once")
        try:
            yield
        except self._conn.lost as exc:
            # One line for the operator, exit 1 and a restart (StoreUnavailable's docstring).
            first = next((t for t in str(exc).splitlines() if t.strip()), type(exc).__name__)
            raise StoreUnavailable(f"{self.path}: store connection lost: {first.strip()}") from None
        finally:
            self._busy.release()
