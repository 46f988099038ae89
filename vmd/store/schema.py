"""The store's schema as an ordered list of migration steps, and the code that applies them.

The schema version N means the first N steps of `MIGRATIONS` have been applied; it is
SQLite's `PRAGMA user_version`, or the `vmd_schema` row on PostgreSQL (vmd.store.postgres).
A step is never edited once released; a change to the schema is a new step appended at the
end. Opening a store whose version is higher than `len(MIGRATIONS)` is refused: an older
vmd must not write to a schema it does not know.

Both backends run the same steps: each statement is written in SQLite's spelling and
translated word by word for PostgreSQL (`Connection.ddl`: STRICT dropped, REAL, INTEGER
and BLOB as DOUBLE PRECISION, BIGINT and BYTEA), except the one step SQLite had to spell
as a table rebuild (`POSTGRESQL_STEPS`).

All pending steps run in one write transaction together with the version bump (DDL is
transactional in both), so a crash mid-migration leaves the store at its old version, and
two processes that open the same new store at once cannot both migrate it (the second
waits for the first one's lock, then sees the new version and does nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from vmd.store.records import StoreError

if TYPE_CHECKING:  # the dialect module imports this one
    from vmd.store.dialect import Connection

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

# PostgreSQL: a step whose SQLite spelling cannot be translated word by word. Step 3
# rebuilds `outbox` because SQLite cannot change a CHECK constraint in place; PostgreSQL
# can (and a rebuild there would collide with the old table's index names).
POSTGRESQL_STEPS: dict[int, Step] = {
    2: (
        "ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check",
        "ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check "
        "CHECK (kind IN ('event', 'order', 'reply'))",
        "ALTER TABLE outbox ADD COLUMN correlation_id TEXT",
    ),
}


def steps_for(conn: Connection, steps: Sequence[Step] = MIGRATIONS) -> list[Step]:
    """`steps` as `conn`'s backend runs them (the same steps, the same version numbers)."""
    if conn.dialect != "postgresql" or steps is not MIGRATIONS:
        return [tuple(conn.ddl(s) for s in step) for step in steps]
    return [tuple(conn.ddl(s) for s in POSTGRESQL_STEPS.get(i, step))
            for i, step in enumerate(steps)]


def check_header(conn: Connection, path: str, steps: Sequence[Step]) -> None:
    """Refuse a database that is not ours or is newer than this code, before touching it."""
    app, version = conn.header()
    if app not in (0, APPLICATION_ID):
        raise StoreError(f"{path}: not a vmd store (SQLite application_id {app:#x})")
    if version > len(steps):
        raise StoreError(
            f"{path}: store schema version {version} is newer than this vmd knows "
            f"({len(steps)}); run a newer vmd or restore an older store file"
        )
    if app == 0 and version == 0 and conn.has_tables():
        kind = "a SQLite file" if conn.dialect == "sqlite" else "a database"
        raise StoreError(f"{path}: not a vmd store ({kind} with other tables)")


def precheck(conn: Connection, path: str, steps: Sequence[Step] = MIGRATIONS) -> None:
    """`check_header` before anything is written, outside a transaction: in one read
    transaction, so the header and the list of tables are read at one point in time (read
    apart, another process's migration committed between them looked like a foreign store
    with tables and no header: found by a test opening a new store four times at once)."""
    conn.begin_read()
    try:
        check_header(conn, path, steps)
    finally:
        conn.rollback()


def migrate(conn: Connection, path: str, steps: Sequence[Step] = MIGRATIONS) -> int:
    """Apply the steps the database lacks; return the version it had before.

    Outside a transaction when called. The header is checked again inside the write
    transaction (which holds the write lock: SQLite's, or PostgreSQL's advisory lock
    taken by `begin_schema`), since another process may have migrated meanwhile.
    """
    conn.begin_schema()
    try:
        check_header(conn, path, steps)
        _, before = conn.header()
        for step in steps_for(conn, steps)[before:]:
            for statement in step:
                conn.execute(statement)
        if before < len(steps):
            conn.set_header(APPLICATION_ID, len(steps))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return before
