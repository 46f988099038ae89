"""Agent-protocol messages refused at a trust edge: counted, and logged without a flood.

The daemon refuses a report whose sender may not speak for its node, and an agent an order
that does not come from the daemon's broker user (docs/security.md). Such a message is
dropped (acked, never requeued: a repeat would be refused again) and counted in
`vmd_agent_messages_refused_total{reason}`; it is logged once per sender and interval
(a minute), with how many were refused meanwhile, so that a hostile or misconfigured sender
cannot fill the journal (`OncePer`, also used for the daemon's dead-lettered requests).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from vmd.obs.logging import get_logger
from vmd.obs.metrics import RefusedCounter

log = get_logger(__name__)

# Keys remembered at most (a key is a broker user: few; this only bounds a bug).
_MAX_SENDERS = 1024


class OncePer:
    """Log limiter: `admit(key)` is the number of calls it suppressed for `key` since the
    last one it admitted, or None while that was less than `interval` seconds ago. Used for
    every log line a sender can cause at will (refused agent messages, dead-lettered
    requests), so that a hostile or misconfigured sender cannot fill the journal."""

    def __init__(self, *, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._logged: dict[str, float] = {}  # key -> when it was last admitted
        self._quiet: dict[str, int] = {}  # key -> calls suppressed since

    def admit(self, key: str) -> int | None:
        now = self.clock()
        last = self._logged.get(key)
        if last is not None and now - last < self.interval:
            self._quiet[key] = self._quiet.get(key, 0) + 1
            return None
        if len(self._logged) >= _MAX_SENDERS:
            self._forget(now)
        self._logged[key] = now
        return self._quiet.pop(key, 0)

    def _forget(self, now: float) -> None:
        for key, when in list(self._logged.items()):
            if now - when >= self.interval:
                del self._logged[key]
                self._quiet.pop(key, None)
        if len(self._logged) >= _MAX_SENDERS:  # all recent: start again
            self._logged.clear()
            self._quiet.clear()


class Refusals:
    """`refuse(sender, reason, **context)`: count it; log it unless this sender was logged
    less than `interval` seconds ago."""

    def __init__(self, counter: RefusedCounter, *, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.counter = counter
        self._once = OncePer(interval=interval, clock=clock)
        self.total = 0

    def refuse(self, sender: str | None, reason: str, what: str, **context: Any) -> None:
        self.total += 1
        self.counter.inc(reason)
        who = sender if sender is not None else "<no user_id>"
        suppressed = self._once.admit(who)
        if suppressed is not None:
            log.warning(what, sender=who, reason=reason, suppressed=suppressed, **context)
