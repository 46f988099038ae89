"""Migrations: from nothing, step by step, idempotent on reopen; foreign or newer files refused."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from vmd.store import SCHEMA_VERSION, Store, StoreError
from vmd.store.schema import APPLICATION_ID, MIGRATIONS, migrate

from .factories import NOW, full_vm


def _schema(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name, sql FROM sqlite_schema ORDER BY name").fetchall()
    conn.close()
    return rows


def _header(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(path)
    try:
        (app,) = conn.execute("PRAGMA application_id").fetchone()
        (version,) = conn.execute("PRAGMA user_version").fetchone()
    finally:
        conn.close()
    return app, version


@pytest.mark.parametrize(
    "exists", [pytest.param(False, id="no-file"), pytest.param(True, id="empty-file")]
)
def test_open_migrates_from_nothing(path: Path, exists: bool) -> None:
    if exists:
        path.write_bytes(b"")
    with Store.open(path) as store:
        settings = store.settings()
    assert settings["schema_version"] == SCHEMA_VERSION == len(MIGRATIONS)
    assert settings["application_id"] == APPLICATION_ID
    assert settings["journal_mode"] == "wal"
    assert settings["synchronous"] == "FULL"
    names = {name for name, _ in _schema(path)}
    assert {"vms", "nodes", "tasks", "idempotency"} <= names
    assert _header(path) == (APPLICATION_ID, SCHEMA_VERSION)


def test_reopen_is_idempotent(path: Path) -> None:
    vm = full_vm()
    with Store.open(path) as store:
        store.put_vm(vm)
    schema = _schema(path)
    for _ in range(2):
        with Store.open(path) as store:
            assert store.load_fleet(NOW).vms == {vm.uuid: vm}
            assert store.settings()["synchronous"] == "FULL"
    assert _schema(path) == schema
    assert _header(path) == (APPLICATION_ID, SCHEMA_VERSION)


def test_newer_schema_is_refused_untouched(path: Path) -> None:
    with Store.open(path):
        pass
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    with pytest.raises(StoreError) as caught:
        Store.open(path)
    message = str(caught.value)
    assert message == (
        f"{path}: store schema version {SCHEMA_VERSION + 1} is newer than this vmd knows "
        f"({SCHEMA_VERSION}); run a newer vmd or restore an older store file"
    )
    assert "\n" not in message
    assert _header(path) == (APPLICATION_ID, SCHEMA_VERSION + 1)


def _foreign_tables(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.close()


def _foreign_app_id(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 42")
    conn.close()


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database at all, just text" * 200)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(
            _foreign_tables, "not a vmd store (a SQLite file with other tables)", id="tables"
        ),
        pytest.param(_foreign_app_id, "not a vmd store (SQLite application_id 0x2a)", id="app-id"),
        pytest.param(_garbage, "cannot open store: file is not a database", id="garbage"),
    ],
)
def test_foreign_file_is_refused(path: Path, make: Callable[[Path], None], expected: str) -> None:
    make(path)
    before = path.read_bytes()
    with pytest.raises(StoreError, match="^" + re.escape(f"{path}: {expected}") + "$"):
        Store.open(path)
    assert path.read_bytes() == before


def test_missing_directory_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "dir" / "vmd.sqlite3"
    with pytest.raises(StoreError, match=r"cannot open store: unable to open database file$"):
        Store.open(path)


STEPS = (
    ("CREATE TABLE a (x INTEGER) STRICT",),
    ("CREATE TABLE b (y TEXT) STRICT", "INSERT INTO b VALUES ('step 2')"),
)


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_migrate_applies_only_missing_steps_in_order(path: Path) -> None:
    conn = _raw(path)
    try:
        assert migrate(conn, str(path), STEPS[:1]) == 0
        conn.execute("INSERT INTO a VALUES (1)")
        assert migrate(conn, str(path), STEPS) == 1
        assert migrate(conn, str(path), STEPS) == 2
        assert conn.execute("SELECT x FROM a").fetchall() == [(1,)]
        assert conn.execute("SELECT y FROM b").fetchall() == [("step 2",)]
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)
    finally:
        conn.close()


def test_failed_migration_leaves_the_old_version(path: Path) -> None:
    broken = (*STEPS, ("CREATE TABLE c (z INTEGER) STRICT", "THIS IS NOT SQL"))
    conn = _raw(path)
    try:
        migrate(conn, str(path), STEPS[:1])
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, str(path), broken)
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema")}
        assert tables == {"a"}
        assert not conn.in_transaction
    finally:
        conn.close()
