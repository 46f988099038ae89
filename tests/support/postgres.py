"""A fresh PostgreSQL database per test, on the server of the development and CI machines.

`fresh_database()` creates a database with a unique random name on 127.0.0.1:5432 (user
`postgres`, trust auth: scripts/test starts the cluster when it is not running) and drops
it afterwards, with any connection a test left open (a SIGKILLed daemon's, say). The
`pg_store_url` fixture yields its URL, ready for `[daemon] store` or `Store.open`; a
conftest that wants it imports it: `from support.postgres import pg_store_url`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest

SERVER = os.environ.get("VMD_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


def store_url(database: str) -> str:
    return f"{SERVER}/{database}"


@contextlib.contextmanager
def fresh_database(prefix: str = "vmd_test") -> Iterator[str]:
    """The URL of a new, empty database; dropped when the block ends."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(store_url("postgres"), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - a machine without it
        pytest.fail(f"PostgreSQL is not running on {SERVER} (scripts/test starts it): {exc}")
    with admin:
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
