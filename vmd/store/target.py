"""What `[daemon] store` names: a SQLite file or a PostgreSQL database.

Why one parser: the settings check (`vmd check`) and `Store.open` must agree on what a
value means, and a mistake must be one line before the daemon starts, not a driver's
traceback after it. The forms:

- a path, or `sqlite:PATH` (`sqlite:///var/lib/vmd/vmd.sqlite3` is the absolute path):
  SQLite, the embedded default;
- `postgresql://[user@][host][:port]/database[?param=value...]` (or `postgres://`): a
  PostgreSQL database, in libpq's URL syntax (sslmode, connect_timeout, ... as query
  parameters). A password is refused here: the URL is logged and shown by `vmd check`;
  libpq reads it from `~/.pgpass` (or `PGPASSFILE`), or use peer, cert or trust auth;
- anything else with `://` is an unknown scheme, not a relative path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from vmd.store.records import StoreError

POSTGRES_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True, slots=True)
class PostgresUrl:
    """A checked PostgreSQL URL (libpq's syntax, no password in it)."""

    url: str

    @property
    def safe(self) -> str:
        """The URL as logged (it holds no password: `problem` refuses one)."""
        return self.url


def problem(value: str) -> str | None:
    """Why `value` names no store, or None when it does (one line, for `vmd check`)."""
    if value == "":
        return "must be a path or a postgresql:// URL (not empty)"
    scheme, sep, rest = value.partition(":")
    if scheme == "sqlite":
        return "sqlite: needs a path (sqlite:///var/lib/vmd/vmd.sqlite3)" if not rest else None
    if scheme in POSTGRES_SCHEMES and sep:
        return _postgres_problem(value)
    if "://" in value:
        return (f"unknown store URL scheme {scheme!r} (a path, sqlite:PATH or "
                "postgresql://user@host:5432/database)")
    return None


def _postgres_problem(value: str) -> str | None:
    parts = urlsplit(value)
    if not value.startswith(tuple(f"{s}://" for s in POSTGRES_SCHEMES)):
        return "a PostgreSQL URL starts with postgresql:// (postgresql://user@host:5432/db)"
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        return "the port of the PostgreSQL URL must be a number from 1 to 65535"
    if parts.password is not None:
        return ("no password in the store URL (it is logged): put it in ~/.pgpass or "
                "PGPASSFILE")
    if parts.path in ("", "/"):
        return "the PostgreSQL URL names no database (postgresql://user@host:5432/vmd)"
    return None


def parse_target(target: str | os.PathLike[str]) -> Path | PostgresUrl:
    """The SQLite path or the PostgreSQL URL `target` names; `StoreError` (one line) if
    it names neither. A `Path` is always a path (the settings hand one for a path)."""
    if not isinstance(target, str):
        return Path(target)
    reason = problem(target)
    if reason is not None:
        # Only the scheme is shown: a refused URL may hold a password.
        shown = target if "://" not in target else target.partition("://")[0] + "://..."
        raise StoreError(f"{shown}: {reason}")
    if target.startswith("sqlite:"):
        rest = target[len("sqlite:"):]
        # sqlite:///abs/path -> /abs/path; sqlite:relative -> relative.
        return Path(rest[2:] if rest.startswith("//") else rest)
    if target.startswith(tuple(f"{s}:" for s in POSTGRES_SCHEMES)):
        return PostgresUrl(target)
    return Path(target)
