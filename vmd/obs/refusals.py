"""Agent-protocol messages refused at a trust edge: counted, and logged without a flood.

The daemon refuses a report whose sender may not speak for its node, and an agent an order
that does not come from the daemon's broker user (docs/security.md). Such a message is
dropped (acked, never requeued: a repeat would be refused again) and counted in
`vmd_agent_messages_refused_total{reason}`; it is logged once per sender and interval
(a minute), with how many were refused meanwhile, so that a hostile or misconfigured sender
cannot fill the journal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from vmd.obs.logging import get_logger
from vmd.obs.metrics import RefusedCounter

log = get_logger(__name__)

# Senders remembered at most (a sender is a broker user: few; this only bounds a bug).
_MAX_SENDERS = 1024


class Refusals:
    """`refuse(sender, reason, **context)`: count it; log it unless this sender was logged
    less than `interval` seconds ago."""

    def __init__(self, counter: RefusedCounter, *, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.counter = counter
        self.interval = interval
        self.clock = clock
        self._logged: dict[str, float] = {}  # sender -> when it was last logged
        self._quiet: dict[str, int] = {}  # sender -> refusals not logged since
        self.total = 0

    def refuse(self, sender: str | None, reason: str, what: str, **context: Any) -> None:
        self.total += 1
        self.counter.inc(reason)
        who = sender if sender is not None else "<no user_id>"
        now = self.clock()
        last = self._logged.get(who)
        if last is not None and now - last < self.interval:
            self._quiet[who] = self._quiet.get(who, 0) + 1
            return
        if len(self._logged) >= _MAX_SENDERS:
            self._forget(now)
        self._logged[who] = now
        suppressed = self._quiet.pop(who, 0)
        log.warning(what, sender=who, reason=reason, suppressed=suppressed, **context)

    def _forget(self, now: float) -> None:
        for who, when in list(self._logged.items()):
            if now - when >= self.interval:
                del self._logged[who]
                self._quiet.pop(who, None)
        if len(self._logged) >= _MAX_SENDERS:  # all recent: start again
            self._logged.clear()
            self._quiet.clear()
