"""Where vmctl's broker URL comes from, so that a password need not be on the command line.

A URL given with `-u` or in `VMD_URL` is visible to other users (`ps`, `/proc/<pid>/environ`
of a shell's children, shell history). Two places keep it out of sight:

- `VMD_URL_FILE=<path>`: a file whose first line (blank lines and `#` comments skipped) is
  the URL; e.g. a systemd credential or a file of a secrets manager.
- `~/.config/vmctl/config.toml` (`$XDG_CONFIG_HOME/vmctl/config.toml`): `url = "amqp://..."`.

Both hold a password, so vmctl refuses them, as ssh refuses a private key, when they are
readable or writable by anyone but their owner (mode 0600 or 0400), or owned by another
user than the one running vmctl (or root). The first source given wins: `-u`, `VMD_URL`,
`VMD_URL_FILE`, the config file, the default URL. Each problem is one line (exit 11).
"""

from __future__ import annotations

import difflib
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/vmd"
URL_ENV = "VMD_URL"
URL_FILE_ENV = "VMD_URL_FILE"
CONFIG_KEYS = ("url",)


class ConfigError(Exception):
    """A URL source vmctl cannot use: one line for the user."""


@dataclass(frozen=True, slots=True)
class UrlSource:
    """The URL and where it came from (`-u`, `VMD_URL`, a file's path, `the default URL`),
    for messages that tell the user what to check."""

    url: str
    origin: str


def config_path(environ: Mapping[str, str]) -> Path | None:
    """`$XDG_CONFIG_HOME/vmctl/config.toml`, else `~/.config/vmctl/config.toml`."""
    base = environ.get("XDG_CONFIG_HOME")
    if base:
        return Path(base) / "vmctl" / "config.toml"
    home = environ.get("HOME")
    return Path(home) / ".config" / "vmctl" / "config.toml" if home else None


def check_private(path: Path) -> None:
    """Refuse a file that others may read or change (it holds a password)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path} is not a regular file")
    if st.st_uid not in (os.getuid(), 0):
        raise ConfigError(f"{path} is owned by uid {st.st_uid}, not by you: refusing it "
                          "(it holds a password)")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise ConfigError(f"permissions {mode:04o} for {path} are too open: it holds a "
                          f"password, so only its owner may read it (chmod 600 {path})")


def _read(path: Path) -> str:
    check_private(path)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def read_url_file(path: Path) -> str:
    """The first line of `path` that is neither blank nor a `#` comment."""
    for line in _read(path).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line
    raise ConfigError(f"{path} holds no URL (its first line that is not a comment)")


def read_config(path: Path) -> str:
    """The `url` of vmctl's config file."""
    try:
        data = tomllib.loads(_read(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for key in data:
        if key not in CONFIG_KEYS:
            close = difflib.get_close_matches(key, CONFIG_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{path}: unknown key {key!r}{hint}; vmctl reads only "
                              "url = \"amqp://user:password@host:port/vhost\"")
    url = data.get("url")
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{path}: missing url = \"amqp://user:password@host:port/vhost\"")
    return url


def resolve_url(option: str | None, environ: Mapping[str, str]) -> UrlSource:
    """The broker URL from the first source given (see the module docstring)."""
    if option:
        return UrlSource(option, "-u")
    if environ.get(URL_ENV):
        return UrlSource(environ[URL_ENV], URL_ENV)
    url_file = environ.get(URL_FILE_ENV)
    if url_file:
        return UrlSource(read_url_file(Path(url_file)), URL_FILE_ENV)
    path = config_path(environ)
    if path is not None and (path.exists() or path.is_symlink()):
        return UrlSource(read_config(path), str(path))
    return UrlSource(DEFAULT_URL, "the default URL")
