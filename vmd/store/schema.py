"""The store's schema as an ordered list of migration steps, and the code that applies them.

The schema version is SQLite's `PRAGMA user_version`: version N means the first N steps
of `MIGRATIONS` have been applied. A step is never edited once released; a change to the
schema is a new step appended at the end. Opening a file whose version is higher than
`len(MIGRATIONS)` is refused: an older vmd must not write to a schema it does not know.

All pending steps run in one `BEGIN IMMEDIATE` transaction together with the version bump,
so a crash mid-migration leaves the file at its old version, and two processes that open
the same new file at once cannot both migrate it (the second waits, then sees the new
version and does nothing).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from vmd.store.records import StoreError

# 'vmd!' in the SQLite header: marks the file as a vmd store so that another
# application's SQLite file is refused instead of being migrated in place.
APPLICATION_ID = 0x766D6421

Step = tuple[str, ...]

MIGRATIONS: tuple[Step, ...] = (
    # 1: the initial schema. STRICT tables reject a value of the wrong type, so an
    # encoding bug in the daemon fails the write instead of storing garbage. Column
    # order of `vms` and `tasks` follows the field order of `vmd.model.Vm` and `Task`.
    (
        """
        CREATE TABLE vms (
            uuid TEXT PRIMARY KEY NOT NULL,
            hostname TEXT NOT NULL,
            alias TEXT NOT NULL,
            owner_uuid TEXT NOT NULL,
            node TEXT NOT NULL,
            brand TEXT NOT NULL,
            ostype TEXT,
            status TEXT NOT NULL CHECK (status IN (
                'stopped', 'starting', 'running', 'stopping', 'frozen', 'notcreated', 'error')),
            status_change REAL,
            observed_at REAL,
            active_definition TEXT,
            pending_definition TEXT,
            snapshots INTEGER NOT NULL,
            task_id TEXT,
            seq INTEGER NOT NULL
        ) STRICT
        """,
        """
        CREATE TABLE nodes (
            name TEXT PRIMARY KEY NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('online', 'unreachable', 'maintenance')),
            last_heartbeat REAL,
            isos TEXT NOT NULL
        ) STRICT
        """,
        """
        CREATE TABLE tasks (
            task_id TEXT PRIMARY KEY NOT NULL,
            vm_uuid TEXT NOT NULL,
            action TEXT NOT NULL,
            method TEXT NOT NULL,
            params TEXT NOT NULL,
            created REAL NOT NULL,
            deadline REAL NOT NULL,
            owner_uuid TEXT NOT NULL,
            node TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('PENDING', 'SUCCESS', 'FAILURE', 'REVOKED')),
            result TEXT,
            ended REAL,
            previous_status TEXT
        ) STRICT
        """,
        # Restore reads pending tasks only; purge deletes by end time.
        "CREATE INDEX tasks_pending ON tasks (state) WHERE state = 'PENDING'",
        "CREATE INDEX tasks_ended ON tasks (ended) WHERE ended IS NOT NULL",
        """
        CREATE TABLE idempotency (
            user TEXT NOT NULL,
            message_id TEXT NOT NULL,
            replies TEXT NOT NULL,
            created REAL NOT NULL,
            PRIMARY KEY (user, message_id)
        ) STRICT
        """,
        "CREATE INDEX idempotency_created ON idempotency (created)",
    ),
    # 2: the outbox (vmd.store.outbox): events and agent orders stored with the turn that
    # made them, deleted once the broker confirmed them, re-published at start-up.
    (
        """
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('event', 'order')),
            exchange TEXT NOT NULL,
            routing_key TEXT NOT NULL,
            body BLOB NOT NULL,
            headers TEXT
        ) STRICT
        """,
    ),
    # 3: stream mode's final replies go through the outbox too (a crash between a task's end
    # and its final reply lost the reply for good: found by the fault suite,
    # docs/reliability.md): kind 'reply', and the reply's correlation id. SQLite cannot
    # change a CHECK constraint in place: the table is rebuilt, its rows kept.
    (
        "ALTER TABLE outbox RENAME TO outbox_2",
        """
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('event', 'order', 'reply')),
            exchange TEXT NOT NULL,
            routing_key TEXT NOT NULL,
            body BLOB NOT NULL,
            headers TEXT,
            correlation_id TEXT
        ) STRICT
        """,
        "INSERT INTO outbox (id, kind, exchange, routing_key, body, headers) "
        "SELECT id, kind, exchange, routing_key, body, headers FROM outbox_2",
        "DROP TABLE outbox_2",
    ),
    # 4: who caused a change, and each VM's power history (GET /vm/<vm>/status/history).
    # `principal` of a task: the AMQP user whose request created it (NULL for vmd's own
    # re-syncs, and for tasks stored before this step). `history`: one row per applied
    # status change, written in the transaction of the change; `recorded` is vmd's clock
    # at the write (the time-based purge uses it), `status_change` the change's own time.
    (
        "ALTER TABLE tasks ADD COLUMN principal TEXT",
        """
        CREATE TABLE history (
            vm_uuid TEXT NOT NULL,
            seq INTEGER NOT NULL,
            status TEXT NOT NULL,
            previous TEXT NOT NULL,
            status_change REAL,
            cause TEXT NOT NULL CHECK (cause IN ('task', 'node', 'admin', 'sync')),
            task_id TEXT,
            principal TEXT,
            recorded REAL NOT NULL,
            PRIMARY KEY (vm_uuid, seq)
        ) STRICT
        """,
        "CREATE INDEX history_recorded ON history (recorded)",
    ),
    # 5: the delivery limit (vmd.daemon.poison): how often each delivery was seen
    # redelivered, recorded before it is handled, so a message that kills the process
    # while in hand is dead-lettered after a few restarts instead of killing it forever.
    # `digest`: 16 bytes of blake2b over the queue, the sender and the message; rows go
    # 24 h after `first_seen`.
    (
        """
        CREATE TABLE redeliveries (
            digest BLOB PRIMARY KEY NOT NULL,
            count INTEGER NOT NULL,
            first_seen REAL NOT NULL
        ) STRICT
        """,
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


def header(conn: sqlite3.Connection) -> tuple[int, int]:
    """(application_id, user_version) of an open database."""
    (app,) = conn.execute("PRAGMA application_id").fetchone()
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    return int(app), int(version)


def check_header(conn: sqlite3.Connection, path: str, steps: Sequence[Step]) -> None:
    """Refuse a file that is not ours or is newer than this code, before touching it."""
    app, version = header(conn)
    if app not in (0, APPLICATION_ID):
        raise StoreError(f"{path}: not a vmd store (SQLite application_id {app:#x})")
    if version > len(steps):
        raise StoreError(
            f"{path}: store schema version {version} is newer than this vmd knows "
            f"({len(steps)}); run a newer vmd or restore an older store file"
        )
    if app == 0 and version == 0:
        (tables,) = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        if tables:
            raise StoreError(f"{path}: not a vmd store (a SQLite file with other tables)")


def migrate(conn: sqlite3.Connection, path: str, steps: Sequence[Step] = MIGRATIONS) -> int:
    """Apply the steps the file lacks; return the version it had before.

    `conn` must be in autocommit mode (isolation_level=None). The header is checked again
    inside the write lock, since another process may have migrated the file meanwhile.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        check_header(conn, path, steps)
        _, before = header(conn)
        for step in steps[before:]:
            for statement in step:
                conn.execute(statement)
        if before < len(steps):
            # PRAGMAs take no parameters; both values are integers we control.
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {len(steps)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    return before
