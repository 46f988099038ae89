"""`[daemon] store`: what a value names (vmd.store.target), as `vmd check` validates it and
`Store.open` reads it; a bad value is one line that never shows a password."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from vmd.settings import validate
from vmd.store.target import PostgresUrl, parse_target

BASE = ('[broker]\nurl = "amqp://vmd:secret@127.0.0.1:5672/vmd"\n'
        '[auth.agents]\n"vmd-agent-node01" = ["node01"]\n[daemon]\n')


def _store(value: str) -> tuple[object, list[str]]:
    sections, found = validate(Path("vmd.toml"), tomllib.loads(f"{BASE}store = {value}\n"))
    return (None if sections is None or sections.daemon is None
            else sections.daemon.store), found


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param('"/var/lib/vmd/vmd.sqlite3"', Path("/var/lib/vmd/vmd.sqlite3"), id="path"),
        pytest.param('"vmd.sqlite3"', Path("vmd.sqlite3"), id="relative-path"),
        pytest.param('"sqlite:///var/lib/vmd/vmd.sqlite3"', Path("/var/lib/vmd/vmd.sqlite3"),
                     id="sqlite-url"),
        pytest.param('"sqlite:vmd.sqlite3"', Path("vmd.sqlite3"), id="sqlite-relative"),
        pytest.param('"postgresql://vmd@db.example.com:5432/vmd"',
                     "postgresql://vmd@db.example.com:5432/vmd", id="postgresql"),
        pytest.param('"postgres://vmd@db/vmd?sslmode=verify-full"',
                     "postgres://vmd@db/vmd?sslmode=verify-full", id="postgres-params"),
    ],
)
def test_accepted_values(value: str, expected: object) -> None:
    got, found = _store(value)
    assert found == []
    assert got == expected
    assert type(got) is type(expected)  # a path is a Path: the SQLite backend


BAD = "vmd.toml: [daemon] store: "


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param('"postgresql://vmd:hunter2@db/vmd"',
                     "no password in the store URL (it is logged): put it in ~/.pgpass or "
                     "PGPASSFILE", id="password"),
        pytest.param('"postgresql://vmd@db:99999/vmd"',
                     "the port of the PostgreSQL URL must be a number from 1 to 65535",
                     id="port"),
        pytest.param('"postgresql://vmd@db/"',
                     "the PostgreSQL URL names no database (postgresql://user@host:5432/vmd)",
                     id="no-database"),
        pytest.param('"postgresql:vmd"', "a PostgreSQL URL starts with postgresql:// "
                     "(postgresql://user@host:5432/db)", id="no-slashes"),
        pytest.param('"mysql://root@db/vmd"', "unknown store URL scheme 'mysql' (a path, "
                     "sqlite:PATH or postgresql://user@host:5432/database)", id="scheme"),
        pytest.param('"sqlite:"', "sqlite: needs a path (sqlite:///var/lib/vmd/vmd.sqlite3)",
                     id="sqlite-no-path"),
        pytest.param('""', "must be a path or a postgresql:// URL (not empty)", id="empty"),
        pytest.param("5", "must be a path or a postgresql:// URL (a string)", id="number"),
    ],
)
def test_refused_values_are_one_line_without_the_value(value: str, expected: str) -> None:
    got, found = _store(value)
    assert got is None
    assert found == [BAD + expected]
    assert "hunter2" not in found[0]


def test_open_reads_what_the_settings_hand_it() -> None:
    # The settings hand a Path for SQLite: a Path is never parsed as a URL.
    assert parse_target(Path("postgresql:x")) == Path("postgresql:x")
    assert parse_target("postgresql://u@h/db") == PostgresUrl("postgresql://u@h/db")
