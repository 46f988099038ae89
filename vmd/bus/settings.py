"""Typed settings of a broker link (docs/architecture.md rule 7: frozen, loaded once, passed
explicitly)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

# Told before each wait of the first connect: (attempt that failed, its error, seconds until
# the next one). The processes report it to systemd (STATUS=waiting for the broker ...).
RetryHook = Callable[[int, str, float], object]

# First-connect attempts when the setting is not given and no service manager waits for us:
# a person at a terminal wants an answer in seconds (5 attempts: about 5 s).
BY_HAND_ATTEMPTS = 5


def boot_attempts(configured: int | None, environ: Mapping[str, str] | None = None) -> int | None:
    """`BusSettings.connect_attempts` from `[broker] connect_attempts` (None = not set).

    0 means until the broker answers (None here). Not set: until it answers under systemd
    (`$NOTIFY_SOCKET`: the unit waits, reporting each attempt in its status line, instead of
    exiting into Restart= and the start limit), `BY_HAND_ATTEMPTS` otherwise.
    """
    if configured is not None:
        return configured or None
    env = os.environ if environ is None else environ
    return None if env.get("NOTIFY_SOCKET") else BY_HAND_ATTEMPTS


@dataclass(frozen=True, slots=True)
class BusSettings:
    """How to reach the broker and how patient to be.

    `url` is `amqp://user:password@host:port/vhost`; the user is the principal RabbitMQ
    validates `user_id` against. `connect_attempts` bounds only the *first* connect (at boot
    the broker may still be starting; `None` retries forever, see `boot_attempts`); after a
    loss the link retries forever, with a backoff from `retry_delay` doubling up to
    `retry_delay_max`, each delay jittered. `reconnect_spread` delays the first reconnect
    after a loss by a random 0..spread seconds, so that a hundred agents losing the same
    broker do not all come back in the same instant. `on_connect_retry` is told about every
    failed attempt of the first connect (`RetryHook`).
    """

    url: str
    connection_name: str = "vmd"
    connect_attempts: int | None = 5
    retry_delay: float = 0.25
    retry_delay_max: float = 5.0
    connect_timeout: float = 5.0
    publish_timeout: float = 10.0
    heartbeat: int = 30
    prefetch: int = 64
    drain_timeout: float = 10.0
    reconnect_spread: float = 0.0
    on_connect_retry: RetryHook | None = field(default=None, compare=False, repr=False)

    @classmethod
    def for_service(
        cls, url: str, configured_attempts: int | None, *, connection_name: str,
        on_connect_retry: RetryHook | None, override_attempts: int | None = None,
        **tuning: Any,
    ) -> BusSettings:
        """The link of a long-running service (`vmd daemon`, `vmd agent`, `vmd api`): the one
        place the three build theirs. `configured_attempts` is the loaded `connect_attempts`
        setting, resolved by `boot_attempts` unless `override_attempts` is given (tests);
        `tuning` sets the other fields."""
        attempts = (boot_attempts(configured_attempts) if override_attempts is None
                    else override_attempts)
        return cls(url=url, connection_name=connection_name, connect_attempts=attempts,
                   on_connect_retry=on_connect_retry, **tuning)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
            raise ValueError(f"not an AMQP URL: {self.redacted_url}")
        if self.connect_attempts is not None and self.connect_attempts < 1:
            raise ValueError("connect_attempts must be at least 1 (or None)")
        if self.prefetch < 1:
            raise ValueError("prefetch must be at least 1 (0 would mean unlimited)")
        if self.reconnect_spread < 0:
            raise ValueError("reconnect_spread must be >= 0")

    @property
    def user(self) -> str:
        """The AMQP user of the URL (RabbitMQ's default `guest` when none is given)."""
        return unquote(urlsplit(self.url).username or "guest")

    @property
    def vhost(self) -> str:
        path = urlsplit(self.url).path
        return unquote(path[1:]) if len(path) > 1 else "/"

    @property
    def redacted_url(self) -> str:
        """The URL without its password, for messages and logs."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        user = parts.username or ""
        return parts._replace(netloc=f"{user}:***@{host}{port}").geturl()
