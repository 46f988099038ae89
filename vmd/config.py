"""Typed settings, loaded once from one TOML file and passed explicitly.

`vmd daemon -c FILE`, `vmd agent -c FILE`, `vmd api -c FILE` and `vmd check -c FILE` read the
same file, each its own sections. The sections and their keys are described once, in
vmd.settings.schema (whose records this module re-exports: `DaemonSettings`, ...);
vmd.settings validates a file against them. Every problem is reported as one line naming
the section and key (`ConfigError`), so the entry points can print it and exit 2 instead
of a traceback. `check()` collects every problem of a file at once (like `nginx -t`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmd.settings import validate
from vmd.settings.schema import (
    AgentSettings,
    ApiSettings,
    AuthSettings,
    BrokerSettings,
    DaemonSettings,
    LogSettings,
    MemorySettings,
    SshSettings,
)
from vmd.settings.types import API_KEY_MIN_LENGTH, LOG_FORMATS, LOG_LEVELS

__all__ = [
    "API_KEY_MIN_LENGTH",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "AgentSettings",
    "ApiSettings",
    "AuthSettings",
    "BrokerSettings",
    "ConfigError",
    "DaemonSettings",
    "LogSettings",
    "MemorySettings",
    "Settings",
    "SshSettings",
    "check",
    "load",
]


class ConfigError(Exception):
    """A configuration problem, as one line: `<file>: [section] key: what is wrong`."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything one file can hold; each process requires its own sections."""

    path: Path
    broker: BrokerSettings | None
    daemon: DaemonSettings | None
    auth: AuthSettings
    agent: AgentSettings | None
    log: LogSettings
    api: ApiSettings | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def check(path: Path, *, sections: tuple[str, ...] = ()) -> list[str]:
    """Every problem of a file, one line each (empty when the file is valid).

    `sections` names the sections a process requires (e.g. ("broker", "daemon")).
    """
    try:
        raw = _read_toml(path)
    except ConfigError as exc:
        return [str(exc)]
    return validate(path, raw, sections=sections)[1]


def load(path: Path, *, sections: tuple[str, ...] = ()) -> Settings:
    """Load and validate; the first problem raises ConfigError (one line)."""
    raw = _read_toml(path)
    parsed, problems = validate(path, raw, sections=sections)
    if problems or parsed is None:
        more = f" (and {len(problems) - 1} more; run `vmd check -c {path}`)" if len(
            problems) > 1 else ""
        raise ConfigError(problems[0] + more)
    return Settings(path=path, broker=parsed.broker, daemon=parsed.daemon, auth=parsed.auth,
                    agent=parsed.agent, log=parsed.log, api=parsed.api, raw=raw)
