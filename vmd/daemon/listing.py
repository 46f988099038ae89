"""Big `GET /vm/status` answers, rendered one slice per event-loop turn (issue 12).

A list of 100,000 VMs costs ~0.4 s of CPU to sort and render. Done in the request's own
step, it held the event loop that long: heartbeats, every other request and the systemd
watchdog waited behind it. The intake renders a list of at most `INLINE` VMs at once (a
few ms, as before) and hands a bigger one here.

`Lister.run` takes the big lists one at a time, in arrival order. For each it takes the
snapshot in one step (vmd.fsm.listing: what the list shows of each VM, copied at one
moment, ~15-35 ms at 100k), then sorts and renders it slice by slice, yielding to the loop
after each (`StatusList.slices`: a few ms each). Each rendered slice is encoded at once, so
the answer is held as ~20 MB of JSON bytes instead of 100,000 dicts, and embedded as is in
the reply (`vmd.bus.fragment`). One list is built at a time: the lists waiting hold nothing
but their request (their snapshot is taken when their turn comes, so an answer shows one
moment between the request's arrival and its answer, never a state older than the
request). The prefetch bounds how many wait.

The finished answer goes through the intake's usual path into the commit pipeline's
current turn, so it is published after every effect decided before it was built (it never
shows a state that is not stored yet), and the request is acked after it. Until then the
request is in hand: a drain waits for the lists (`join`) before its flush. A request whose
connection was lost meanwhile is dropped unanswered (the broker delivers it again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from vmd.bus import Delivery, encode, fragment
from vmd.fsm import World
from vmd.fsm.listing import StatusList
from vmd.fsm.params import OrderBy, parse_order_by
from vmd.fsm.replies import INVALID_ORDER_BY, error
from vmd.model import Principal, Reply
from vmd.obs.logging import get_logger, log_context

log = get_logger(__name__)

# VMs rendered (and encoded) per slice: ~5 ms. A list of at most this many VMs is
# rendered in the request's own step.
SLICE = 2000
INLINE = SLICE
_INVALID_ORDER_BY = error(412, INVALID_ORDER_BY)
INTERNAL_ERROR = error(500, "Internal error")

Done = Callable[[Reply], None]


class Lister:
    """Renders the big lists in slices; one per daemon (the intake's)."""

    def __init__(self, *, world: World, slice_size: int = SLICE, inline: int = INLINE) -> None:
        self._world = world
        self._slice = slice_size
        self._inline = inline
        self._waiting: asyncio.Queue[tuple[Principal, OrderBy, Delivery, Done]] = (
            asyncio.Queue())
        self.built = 0

    def takes(self, principal: Principal) -> bool:
        """True when `principal`'s list is too big for one step."""
        vms = self._world.vms
        n = len(vms) if principal.admin else vms.owned_count(principal.owner_uuids)
        return n > self._inline

    def submit(self, principal: Principal, data: Mapping[str, Any], delivery: Delivery,
               done: Done) -> None:
        """Queue a list; `done(reply)` is called once it is built (a 412 at once)."""
        order = parse_order_by(data.get("order_by"))
        if order is None:
            done(_INVALID_ORDER_BY)
            return
        self._waiting.put_nowait((principal, order, delivery, done))

    async def join(self) -> None:
        """Return once every list queued so far is answered (or dropped)."""
        await self._waiting.join()

    async def run(self) -> None:
        """Build the queued lists, one at a time (a long-lived task of the runner)."""
        while True:
            principal, order, delivery, done = await self._waiting.get()
            try:
                if not delivery.stale:
                    reply = await self._build(StatusList(self._world, principal, order),
                                              delivery)
                    if reply is not None:
                        done(reply)
                        self.built += 1
            finally:
                self._waiting.task_done()

    async def _build(self, job: StatusList, delivery: Delivery) -> Reply | None:
        parts: list[bytes] = []
        for part in job.slices(self._slice):
            if part:
                try:
                    parts.append(encode(part)[1:-1])  # the objects, without "[", "]"
                except ValueError as exc:
                    # A value JSON cannot hold (a node reported it): this answer's error,
                    # never the daemon's (docs/architecture.md rule 10).
                    with log_context(correlation_id=delivery.correlation_id):
                        log.error("list answer cannot be encoded", error=str(exc))
                    return INTERNAL_ERROR
            await asyncio.sleep(0)
            if delivery.stale:
                return None  # redelivered: that one is answered
        # One join, one copy of the ~20 MB (`b"[" + ... + b"]"` made three).
        pieces = [b"["]
        for encoded in parts:
            pieces += (encoded, b",")
        pieces[-1] = b"]" if parts else b"[]"
        return job.reply(fragment(b"".join(pieces)))
