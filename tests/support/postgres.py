"""A fresh PostgreSQL database per test, on the server of the development and CI machines.

`fresh_database()` creates a database with a unique random name on 127.0.0.1:5432 (user
`postgres`, trust auth: scripts/test starts the cluster when it is not running) and drops
it afterwards, with any connection a test left open (a SIGKILLed daemon's, say). The
`pg_store_url` fixture yields its URL, ready for `[daemon] store` or `Store.open`; a
conftest that wants it imports it: `from support.postgres import pg_store_url`.

`VMD_TEST_STORE=postgresql` puts every test daemon's store on PostgreSQL instead of its
SQLite file (docs/testing.md, "The daemon on PostgreSQL"): the harnesses that write a
daemon's settings (tests/daemon/conftest.py, tests/support/fastdaemon.py,
tests/support/cloud.py) ask `daemon_store(path)` for the `[daemon] store` value, which is
then a fresh database per SQLite path (the same one for every daemon of the test on that
path, so a restarted daemon finds its state), dropped at the end of the test by tests/
conftest.py's `_drop_test_stores`. Why an env var and not a fixture parameter: it runs the
daemon's whole behaviour and e2e suites on the other backend once, to find where the
backends differ, without doubling every run of the normal suite.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

SERVER = os.environ.get("VMD_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
TEST_STORE = os.environ.get("VMD_TEST_STORE", "sqlite")
if TEST_STORE not in ("sqlite", "postgresql"):  # pragma: no cover - a typo in the env var
    raise RuntimeError(f"VMD_TEST_STORE={TEST_STORE!r}: sqlite or postgresql")
# SQLite path -> database of the running test (VMD_TEST_STORE=postgresql only).
_test_stores: dict[Path, str] = {}


def store_url(database: str) -> str:
    return f"{SERVER}/{database}"


@contextlib.contextmanager
def fresh_database(prefix: str = "vmd_test") -> Iterator[str]:
    """The URL of a new, empty database; dropped when the block ends."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield store_url(name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_store_url() -> Iterator[str]:
    """A fresh database's URL (postgresql://postgres@127.0.0.1:5432/vmd_test_<random>)."""
    with fresh_database() as url:
        yield url


def daemon_store(path: Path) -> str:
    """The `[daemon] store` of a test daemon whose SQLite file is `path`: the path, or with
    `VMD_TEST_STORE=postgresql` the URL of a fresh database kept for that path until the
    test ends (module docstring)."""
    if TEST_STORE == "sqlite":
        return str(path)
    key = path.resolve()
    if key not in _test_stores:
        name = f"vmd_test_{secrets.token_hex(6)}"
        with _admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        _test_stores[key] = name
    return store_url(_test_stores[key])


def drop_test_stores() -> None:
    """Drop the databases `daemon_store` created (at the end of each test)."""
    if not _test_stores:
        return
    with _admin() as admin:
        while _test_stores:
            _, name = _test_stores.popitem()
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(store_url("postgres"), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - a machine without it
        pytest.fail(f"PostgreSQL is not running on {SERVER} (scripts/test starts it): {exc}")
