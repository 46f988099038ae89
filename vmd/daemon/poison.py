"""The guard around the daemon's consumers: no single message may stop the daemon (issue 12).

A message can stop the process in two ways, and the guard turns each into that message's
own failure (docs/architecture.md rule 10):

1. **Its effects cannot be recorded.** An answer, event, order or row of it is one JSON or
   the store cannot hold (a bug where the value was made): the step that records it raises
   `UNENCODABLE` (vmd.daemon.commit), after the handler's last await, so in the current
   turn. The guard makes it `Pipeline.fail`: 500 `Internal error`, dead-lettered to
   `vmd.dead` with `x-vmd-error`, and the rest of the turn goes on.
2. **It kills the process while in hand** (a bug nothing can catch: a crash in C code, the
   OOM killer, the systemd watchdog). The request was never acked, so the broker delivers it
   again after the restart, marked `redelivered`, and it kills the new process too, until
   systemd's start limit leaves the daemon down. RabbitMQ's own remedy, a quorum queue's
   `x-delivery-limit`, is not open to vmd: `vmd.commands` is public (protocol.md §1), and
   on RabbitMQ 3.10 re-declaring a quorum queue without `x-queue-type: quorum`, as every
   client may, fails with PRECONDITION_FAILED (docs/reliability.md, "The delivery limit").
   So the daemon counts: each delivery the broker marks redelivered is counted in the
   store (`Store.count_redelivery`: one fsync'd write) *before* it is handled, so the count
   survives the death it may cause; one seen redelivered more than `REDELIVERY_LIMIT`
   times is not handled but answered 500 and dead-lettered with `x-vmd-error: delivery
   limit exceeded (...)`. Deliveries that are not redelivered (all but a few) cost nothing.
   A redelivery this process has counted already (the same message again after a lost
   connection, not after a death) is handled without counting it again (`_counted`, in
   memory), so a flapping broker connection cannot push a healthy message over the limit:
   only process starts can.

`REDELIVERY_LIMIT` = 2: systemd/vmd.service allows 5 starts in 300 s
(`StartLimitBurst=5`); a message that kills the daemon each time costs three deaths (its
delivery and two redeliveries) and the fourth start dead-letters it, leaving room for one
more failure of another kind. A healthy message is redelivered only when the daemon's
connection was lost or the process ended while it was in hand, once per such event: it
would need three process starts within 24 h (the rows' lifetime), each while that same
message was in hand, to be refused.

The agents need no such count: an agent journals a task before running it and acks it as
soon as it started, so a redelivered task it journaled is reported, never run again
(vmd.node_agent.journal), and a task queue's messages expire at their task's deadline.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from vmd.bus import Delivery
from vmd.daemon.commit import UNENCODABLE, Pipeline
from vmd.daemon.options import Clock
from vmd.obs.metrics import DaemonMetrics
from vmd.store import Store

Handler = Callable[[Delivery], Awaitable[None]]

# Redeliveries of one delivery handled before it is dead-lettered (see the module docstring).
REDELIVERY_LIMIT = 2
# Digests this process counted, remembered against a lost connection's redelivery of them.
COUNTED_SIZE = 4096


def delivery_digest(delivery: Delivery) -> bytes:
    """What makes a delivery the same message when it comes again: its queue, sender, ids
    and body (16 bytes of blake2b)."""
    h = hashlib.blake2b(digest_size=16)
    for part in (delivery.queue, delivery.user_id, delivery.message_id,
                 delivery.correlation_id):
        h.update((part or "").encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    h.update(delivery.body)
    return h.digest()


class Guard:
    """Wraps the daemon's consumer handlers (see the module docstring)."""

    def __init__(self, *, pipeline: Pipeline, store: Store, clock: Clock,
                 metrics: DaemonMetrics, limit: int = REDELIVERY_LIMIT) -> None:
        self._pipeline = pipeline
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self.limit = limit
        self._counted: OrderedDict[bytes, None] = OrderedDict()

    def wrap(self, handler: Handler) -> Handler:
        async def guarded(delivery: Delivery) -> None:
            if delivery.redelivered and not await self._admit(delivery):
                return
            try:
                await handler(delivery)
            except UNENCODABLE as exc:
                self._pipeline.fail(delivery, delivery.reply_to or None, exc)

        return guarded

    async def _admit(self, delivery: Delivery) -> bool:
        """Count this redelivery durably; False if it is past the limit (then it is failed:
        500 and dead-lettered) or its connection went meanwhile (it comes again)."""
        digest = delivery_digest(delivery)
        if digest in self._counted:
            return True  # counted by this process: back after a lost connection, not a death
        count = await self._pipeline.run_store(self._store.count_redelivery, digest,
                                               self._clock())
        self._counted[digest] = None
        if len(self._counted) > COUNTED_SIZE:
            self._counted.popitem(last=False)
        if delivery.stale:
            return False
        if count <= self.limit:
            return True
        self._metrics.delivery_limit_exceeded.inc()
        reason = f"delivery limit exceeded (redelivered {count} times, limit {self.limit})"
        self._pipeline.fail(delivery, delivery.reply_to or None, reason, reason=reason)
        return False
