"""Typed settings of a broker link (docs/architecture.md rule 7: frozen, loaded once, passed
explicitly)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True, slots=True)
class BusSettings:
    """How to reach the broker and how patient to be.

    `url` is `amqp://user:password@host:port/vhost`; the user is the principal RabbitMQ
    validates `user_id` against. `connect_attempts` bounds only the *first* connect (at boot
    the broker may still be starting; `None` retries forever); after a loss the link retries
    forever, with a backoff from `retry_delay` doubling up to `retry_delay_max`.
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

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
            raise ValueError(f"not an AMQP URL: {self.redacted_url}")
        if self.connect_attempts is not None and self.connect_attempts < 1:
            raise ValueError("connect_attempts must be at least 1 (or None)")
        if self.prefetch < 1:
            raise ValueError("prefetch must be at least 1 (0 would mean unlimited)")

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
