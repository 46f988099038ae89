"""Run-time knobs of the daemon that are not operator settings: the clock and loop periods.

`[daemon]` in the TOML file (vmd.config.DaemonSettings) says *what* the daemon does; these
say how often its loops look and which clock they read. Production uses the defaults; the
tests inject a clock they can move forward and short periods (docs/architecture.md rule 8: time is
injectable, so deadlines and heartbeat timeouts are tested without waiting for them).

All times the daemon stores and compares (task deadlines, status_change, heartbeats) are
POSIX seconds from `clock`, never the event loop's monotonic time: they outlive the process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vmd.bus import BusSettings
from vmd.config import Settings
from vmd.obs import systemd

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Options:
    """How the daemon's loops run (not in the TOML file)."""

    clock: Clock = field(default=time.time)
    # How often the deadline timer, the node monitor and the housekeeping look at the clock
    # (at most; the deadline timer also wakes for a new earliest deadline).
    tick: float = 0.5
    # How often ended tasks and idempotency keys older than the retention are purged.
    purge_interval: float = 3600.0
    # Ended tasks kept in memory (for `GET /task/<id>/status` without a store read): the
    # most recent ones, at most this many and at most this old; the store keeps all 24 h.
    keep_ended: int = 10_000
    keep_ended_seconds: float = 600.0
    # Idempotency records younger than this keep their answers in memory; older ones keep
    # only their key (a repeat that late reads its answers from the store). All are kept
    # 24 h (protocol.md §5); docs/operations.md "Sizing the daemon's memory".
    idempotency_hot_seconds: float = 600.0
    # Pause between attempts to publish a commit whose publish failed (broker away).
    retry_delay: float = 0.2
    # How long the last step of the shutdown waits for the bus to settle what is left.
    close_timeout: float = 2.0
    # Connection name shown by `rabbitmqctl list_connections client_properties`.
    connection_name: str = "vmd-daemon"
    # First connect: attempts before exit 1; None: `[broker] connect_attempts` (not set:
    # until the broker answers under systemd, 5 by hand: vmd.bus.boot_attempts).
    connect_attempts: int | None = None
    retry_delay_max: float = 5.0
    publish_timeout: float = 10.0


def bus_settings(settings: Settings, options: Options, notify: systemd.Notifier) -> BusSettings:
    """The bus link of the daemon, from `[broker]` and `[daemon]`; the first connect's
    retries are reported through `notify`, the process's one Notifier."""
    assert settings.broker is not None and settings.daemon is not None
    return BusSettings.for_service(
        settings.broker.url, settings.broker.connect_attempts,
        connection_name=options.connection_name,
        on_connect_retry=notify.waiting_for_broker,
        override_attempts=options.connect_attempts,
        retry_delay_max=options.retry_delay_max,
        publish_timeout=options.publish_timeout,
        prefetch=settings.daemon.prefetch,
        drain_timeout=settings.daemon.drain_timeout,
    )
