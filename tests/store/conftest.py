"""Fixtures for the store tests: every test runs on both backends.

`target` is what `Store.open` is given: a SQLite file in a temp dir, or the URL of a fresh
PostgreSQL database (tests.support.postgres: created for the test, dropped after it).
`raw` opens a plain connection to the same store, behind the store's back (migrations from
an older step, rows written by hand), as `vmd.store.dialect.Connection`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from support.postgres import fresh_database, pg_store_url  # noqa: F401

from vmd.store import Store
from vmd.store.dialect import Connection, SqliteConnection
from vmd.store.postgres import PgConnection

Target = Path | str


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def target(backend: str, tmp_path: Path) -> Iterator[Target]:
    if backend == "sqlite":
        yield tmp_path / "vmd.sqlite3"
        return
    with fresh_database("vmd_store") as url:
        yield url


def connect(target: Target) -> Connection:
    """A plain autocommit connection to the store `target` names."""
    if isinstance(target, Path):
        return SqliteConnection(sqlite3.connect(target, isolation_level=None))
    return PgConnection(psycopg.connect(target, autocommit=True))


@pytest.fixture
def raw(target: Target) -> Iterator[Callable[[], Connection]]:
    opened: list[Connection] = []

    def open_raw() -> Connection:
        conn = connect(target)
        opened.append(conn)
        return conn

    yield open_raw
    for conn in opened:
        conn.close()


@pytest.fixture
def store(target: Target) -> Iterator[Store]:
    with Store.open(target) as opened:
        yield opened


def tables(conn: Connection) -> set[str]:
    """The names of the store's tables (vmd_schema, PostgreSQL's header, left out)."""
    if conn.dialect == "sqlite":
        sql = "SELECT name FROM sqlite_schema WHERE type = 'table'"
    else:
        sql = ("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
               "AND tablename <> 'vmd_schema'")
    return {name for (name,) in conn.execute(sql)}


def integrity_error(store: Store) -> type[Exception]:
    """The driver's exception for a row that breaks a constraint, on `store`'s backend."""
    return sqlite3.IntegrityError if store.dialect == "sqlite" else psycopg.IntegrityError
