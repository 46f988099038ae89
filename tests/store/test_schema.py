"""Migrations: from nothing, step by step, idempotent on reopen; foreign or newer stores
refused, on both backends (the same steps: vmd.store.schema)."""

from __future__ import annotations

import re
import secrets
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from support.postgres import fresh_database, store_url
from support.store import put

from vmd.store import SCHEMA_VERSION, Store, StoreError
from vmd.store.dialect import Connection
from vmd.store.schema import APPLICATION_ID, MIGRATIONS, migrate

from .conftest import Target, connect, tables
from .factories import NOW, full_vm


def _schema(target: Target) -> list[tuple[str, ...]]:
    """Every table's columns and every index, as the backend describes them."""
    conn = connect(target)
    try:
        if conn.dialect == "sqlite":
            sql = "SELECT name, sql FROM sqlite_schema ORDER BY name"
        else:
            sql = ("SELECT table_name, column_name, data_type, is_nullable "
                   "FROM information_schema.columns WHERE table_schema = current_schema() "
                   "UNION ALL SELECT indexname, indexdef, '', '' FROM pg_indexes "
                   "WHERE schemaname = current_schema() ORDER BY 1, 2")
        return [tuple(row) for row in conn.execute(sql)]
    finally:
        conn.close()


def _header(target: Target) -> tuple[int, int]:
    conn = connect(target)
    try:
        return conn.header()
    finally:
        conn.close()


@pytest.mark.parametrize(
    "exists", [pytest.param(False, id="no-file"), pytest.param(True, id="empty-file")]
)
def test_open_migrates_from_nothing(target: Target, exists: bool) -> None:
    if exists and isinstance(target, Path):
        target.write_bytes(b"")
    with Store.open(target) as store:
        settings = store.settings()
    assert settings["schema_version"] == SCHEMA_VERSION == len(MIGRATIONS)
    assert settings["application_id"] == APPLICATION_ID
    if settings["backend"] == "sqlite":
        assert settings["journal_mode"] == "wal"
        assert settings["synchronous"] == "FULL"
    else:
        # Durable at COMMIT: the server flushes its WAL before answering.
        assert settings["synchronous_commit"] == "on"
    conn = connect(target)
    try:
        assert {"vms", "nodes", "tasks", "idempotency", "outbox", "history",
                "redeliveries"} <= tables(conn)
    finally:
        conn.close()
    assert _header(target) == (APPLICATION_ID, SCHEMA_VERSION)


def test_both_backends_get_the_same_columns(tmp_path: Path, pg_store_url: str) -> None:
    """The translated steps make the same tables with the same columns in the same order
    (rows are positional: vmd.store.rows)."""
    columns: list[dict[str, list[str]]] = []
    for target in (tmp_path / "s.sqlite3", pg_store_url):
        Store.open(target).close()
        conn = connect(target)
        try:
            columns.append({t: _columns(conn, t) for t in tables(conn)})
        finally:
            conn.close()
    assert columns[0] == columns[1]


def _columns(conn: Connection, table: str) -> list[str]:
    if conn.dialect == "sqlite":
        return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
    return [name for (name,) in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "AND table_schema = current_schema() ORDER BY ordinal_position", (table,))]


def test_reopen_is_idempotent(target: Target) -> None:
    vm = full_vm()
    with Store.open(target) as store:
        put(store, vm)
    schema = _schema(target)
    for _ in range(2):
        with Store.open(target) as store:
            assert store.load_fleet(NOW).vms == {vm.uuid: vm}
    assert _schema(target) == schema
    assert _header(target) == (APPLICATION_ID, SCHEMA_VERSION)


def test_newer_schema_is_refused_untouched(target: Target) -> None:
    with Store.open(target) as store:
        name = store.path
    conn = connect(target)
    conn.set_header(APPLICATION_ID, SCHEMA_VERSION + 1)
    conn.close()

    with pytest.raises(StoreError) as caught:
        Store.open(target)
    message = str(caught.value)
    assert message == (
        f"{name}: store schema version {SCHEMA_VERSION + 1} is newer than this vmd knows "
        f"({SCHEMA_VERSION}); run a newer vmd or restore an older store file"
    )
    assert "\n" not in message
    assert _header(target) == (APPLICATION_ID, SCHEMA_VERSION + 1)


def _foreign_tables(target: Target) -> None:
    conn = connect(target)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.close()


def _foreign_app_id(target: Target) -> None:
    conn = connect(target)
    if conn.dialect == "sqlite":
        conn.execute("PRAGMA application_id = 42")
    else:
        conn.set_header(42, 0)
    conn.close()


def _garbage(target: Target) -> None:
    assert isinstance(target, Path)
    target.write_bytes(b"this is not a database at all, just text" * 200)


def _contents(target: Target) -> object:
    return target.read_bytes() if isinstance(target, Path) else _schema(target)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(_foreign_tables, "not a vmd store ({kind} with other tables)", id="tables"),
        pytest.param(_foreign_app_id, "not a vmd store (SQLite application_id 0x2a)",
                     id="app-id"),
    ],
)
def test_foreign_store_is_refused(target: Target, make: Callable[[Target], None],
                                  expected: str) -> None:
    make(target)
    before = _contents(target)
    kind = "a SQLite file" if isinstance(target, Path) else "a database"
    with pytest.raises(StoreError, match="^" + re.escape(
            f"{target}: {expected.format(kind=kind)}") + "$"):
        Store.open(target)
    assert _contents(target) == before


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    # SQLite only: a PostgreSQL store is a database on a server, never a file of bytes.
    target = tmp_path / "vmd.sqlite3"
    _garbage(target)
    before = _contents(target)
    with pytest.raises(StoreError, match="^" + re.escape(
            f"{target}: cannot open store: file is not a database") + "$"):
        Store.open(target)
    assert _contents(target) == before


def test_missing_directory_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "dir" / "vmd.sqlite3"
    with pytest.raises(StoreError, match=r"cannot open store: unable to open database file$"):
        Store.open(path)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("postgresql://postgres@127.0.0.1:1/vmd",
                     r"^postgresql://postgres@127\.0\.0\.1:1/vmd: cannot open store: "
                     r"connection failed: .*refused.*$", id="no-server"),
        pytest.param("postgresql://postgres@127.0.0.1:5432/vmd_no_such_db_h1",
                     r"^postgresql://postgres@127\.0\.0\.1:5432/vmd_no_such_db_h1: cannot open "
                     r'store: connection failed: .*database "vmd_no_such_db_h1" does not '
                     r"exist$", id="no-database"),
        pytest.param("postgresql://postgres:secret@127.0.0.1:5432/vmd",
                     r"^postgresql://\.\.\.: no password in the store URL", id="password"),
        pytest.param("mysql://root@db/vmd", r"^mysql://\.\.\.: unknown store URL scheme",
                     id="scheme"),
    ],
)
def test_unusable_postgresql_url_is_one_clear_line(url: str, expected: str) -> None:
    with pytest.raises(StoreError) as caught:
        Store.open(url)
    assert re.match(expected, str(caught.value)), str(caught.value)
    assert "\n" not in str(caught.value)
    assert "secret" not in str(caught.value)


def test_sqlite_url_is_a_path(tmp_path: Path) -> None:
    path = tmp_path / "u.sqlite3"
    with Store.open(f"sqlite://{path}") as store:
        assert (store.dialect, store.path) == ("sqlite", str(path))
    assert path.is_file()


STEPS = (
    ("CREATE TABLE a (x INTEGER) STRICT",),
    ("CREATE TABLE b (y TEXT) STRICT", "INSERT INTO b VALUES ('step 2')"),
)


def test_migrate_applies_only_missing_steps_in_order(
        target: Target, raw: Callable[[], Connection]) -> None:
    conn = raw()
    assert migrate(conn, str(target), STEPS[:1]) == 0
    conn.execute("INSERT INTO a VALUES (1)")
    assert migrate(conn, str(target), STEPS) == 1
    assert migrate(conn, str(target), STEPS) == 2
    assert conn.execute("SELECT x FROM a").fetchall() == [(1,)]
    assert conn.execute("SELECT y FROM b").fetchall() == [("step 2",)]
    assert conn.header() == (APPLICATION_ID, 2)


def test_failed_migration_leaves_the_old_version(
        target: Target, raw: Callable[[], Connection]) -> None:
    broken = (*STEPS, ("CREATE TABLE c (z INTEGER) STRICT", "THIS IS NOT SQL"))
    conn = raw()
    migrate(conn, str(target), STEPS[:1])
    syntax = sqlite3.OperationalError if conn.dialect == "sqlite" else Exception
    with pytest.raises(syntax, match="syntax error"):
        migrate(conn, str(target), broken)
    assert conn.header()[1] == 1
    assert tables(conn) == {"a"}
    assert not conn.in_transaction


def test_two_processes_opening_a_new_store_at_once_migrate_it_once(target: Target) -> None:
    """A leader and a standby started together on a new database (or two openers of a new
    file): the second waits for the first one's migration lock, then finds it done."""
    barrier = threading.Barrier(4)

    def open_once() -> int:
        barrier.wait(10)
        with Store.open(target) as store:
            version = store.settings()["schema_version"]
        assert isinstance(version, int)
        return version

    with ThreadPoolExecutor(max_workers=4) as pool:
        versions = list(pool.map(lambda _: open_once(), range(4)))
    assert versions == [SCHEMA_VERSION] * 4
    assert _header(target) == (APPLICATION_ID, SCHEMA_VERSION)


def test_postgresql_connection_bounds_a_hang_unless_the_url_says(pg_store_url: str) -> None:
    """libpq's TCP options (vmd.store.postgres.LIBPQ_DEFAULTS) bound a call on a vanished
    server; a value the URL sets wins."""
    with Store.open(f"{pg_store_url}?keepalives_idle=7") as store:
        settings = store.settings()
    assert (settings["keepalives_idle"], settings["tcp_user_timeout"],
            settings["connect_timeout"]) == ("7", "10000", "10")


def test_a_migration_the_database_refuses_is_one_clear_line() -> None:
    """A database user without CREATE on the schema (PostgreSQL 15's default for a
    non-owner): the operator's to fix, so a `StoreError`, not a driver's traceback."""
    role = f"vmd_store_ro_{secrets.token_hex(4)}"
    admin = psycopg.connect(store_url("postgres"), autocommit=True)
    try:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        with fresh_database("vmd_store") as url:
            target = url.replace("postgres@", f"{role}@")
            with pytest.raises(StoreError) as caught:
                Store.open(target)
        assert str(caught.value) == (
            f"{target}: cannot open store: permission denied for schema public")
    finally:
        admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin.close()
