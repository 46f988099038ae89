"""The value types a settings key can have, each with its range and its wording.

Why this module exists: a key's type says at once what TOML may hold there and what an
error about it says (`must be an integer >= 1 (got 0)`), so the sections in
`vmd.settings.schema` are plain annotated fields and no key is described twice.

Scalars are strict (`5` is not a `"5"`, `true` is not a `1`; an integer is accepted where a
number is, as TOML writes `330` for 330 s). Collections are what TOML has: arrays become
tuples or frozensets, strings become paths. `Field(description=...)` is the wording of a
value in an error; without it `vmd.settings.problems` derives one from the type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field, Strict

from vmd.store import target as store_target

Str = Annotated[str, Strict()]
# A name (a host, a user, a node, a VM): any non-empty string.
Name = Annotated[str, Strict(), Field(min_length=1)]
Int = Annotated[int, Strict()]

# Counts where 0 would mean nothing (or, worse, "no limit" by accident).
Count = Annotated[int, Strict(), Field(ge=1)]
NonNegInt = Annotated[int, Strict(), Field(ge=0)]
# Seconds: an interval, a deadline, a timeout (0 would spin or expire at once; TOML's
# inf and nan are refused: a timer that never fires is no setting).
Seconds = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
NonNegSeconds = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
Port = Annotated[int, Strict(), Field(ge=1, le=65535)]
# First connect to the broker: attempts before giving up; 0 = until the broker answers.
Attempts = Annotated[int, Strict(), Field(ge=0, description="an integer >= 0 "
                                                           "(0: until the broker answers)")]


def _path_text(value: Any) -> Any:
    # Path("") is ".", the working directory: an empty string is a mistake, not a path.
    if not isinstance(value, str | Path) or str(value) == "":
        raise ValueError("must be a path (a non-empty string)")
    return value


PathValue = Annotated[Path, BeforeValidator(_path_text)]


def _store(value: Any) -> Any:
    """`[daemon] store`: a path (or `sqlite:PATH`) becomes a `Path`, a PostgreSQL URL stays
    a string (vmd.store.target says which forms there are, and why no password)."""
    if isinstance(value, Path):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a path or a postgresql:// URL (a string)")
    reason = store_target.problem(value)
    if reason is not None:
        raise ValueError(reason)
    where = store_target.parse_target(value)
    return where.url if isinstance(where, store_target.PostgresUrl) else where


StoreValue = Annotated[Path | str, BeforeValidator(_store)]

# Lists of names (a set: order and repeats mean nothing).
Names = Annotated[frozenset[Name], Field(strict=False)]
OwnerUuids = Annotated[Names, Field(description="a list of owner uuids")]
NodeNames = Annotated[Names, Field(description="a list of node names")]
# An argument list (argv[0] is the program), never a shell command line.
Argv = Annotated[tuple[Name, ...], Field(strict=False, min_length=1,
                                          description="an argument list such as "
                                                      '["/usr/sbin/vmadm"]')]


def _host_port(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not (host and port.isdigit() and int(port) <= 65535):
        raise ValueError("must be host:port with a port from 0 to 65535 "
                         "(0: any free port)")
    return value


# A listening address. Port 0 picks a free port (the tests use it); the process logs it.
Address = Annotated[str, Strict(), AfterValidator(_host_port)]


def _amqp_url(value: str) -> str:
    if not value.startswith(("amqp://", "amqps://")):
        raise ValueError("must be an amqp:// URL")
    return value


AmqpUrl = Annotated[str, Strict(), AfterValidator(_amqp_url)]


def _prefix(value: str) -> str:
    """The URL prefix without its trailing "/" ("/" and "" mean none)."""
    if (value and not value.startswith("/")) or any(c.isspace() or c in "?#" for c in value):
        raise ValueError('must be "" or a path such as "/api" (no spaces)')
    return value.rstrip("/")


UrlPrefix = Annotated[str, Strict(), AfterValidator(_prefix)]

# An API key travels in a header (`ES-API-KEY: <key>`, `Authorization: Token <key>`):
# printable ASCII without spaces, and long enough not to be guessed.
API_KEY_MIN_LENGTH = 16


def _api_key(value: str) -> str:
    if not (len(value) >= API_KEY_MIN_LENGTH and value.isascii() and value.isprintable()
            and " " not in value):
        raise ValueError(f"an API key must be at least {API_KEY_MIN_LENGTH} printable ASCII "
                         "characters without spaces")
    return value


ApiKey = Annotated[str, AfterValidator(_api_key)]
Principal = Annotated[str, Strict(), Field(min_length=1,
                                           description="a principal (an AMQP user name)")]



def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


# Case does not matter ("INFO" is "info").
LogLevel = Annotated[Literal["debug", "info", "warning", "error", "critical"],
                     BeforeValidator(_lower)]
# "auto": JSON lines when stdout is not a terminal (journald), readable text on a terminal.
LogFormat = Literal["auto", "json", "console"]
LOG_LEVELS: tuple[str, ...] = get_args(get_args(LogLevel)[0])
LOG_FORMATS: tuple[str, ...] = get_args(LogFormat)
