"""What one turn of the commit pipeline holds: the effects of the decisions taken since the
previous turn, in the order they were made (vmd.daemon.commit carries them out).

Each decision step returns an `Effects` (vmd.daemon.effects) and hands it to
`Pipeline.submit`, which adds it to the current `Turn` (`Turn.add`: its rows into the
turn's `Batch`, its events and orders after the turn's). Nothing but vmd.daemon.commit
touches a turn; nothing here does I/O; the pipeline's write and publish stages are the only
readers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from vmd.bus import AgentOrder, Delivery, EncodeError, Event, Outgoing, reply_message
from vmd.daemon.effects import Answer, Effects, Settle
from vmd.model import Reply
from vmd.store import Batch

# The answer of a request whose effects could not be encoded, and its dead-lettering reason.
INTERNAL_ERROR = Reply(500, {"detail": "Internal error"})
UNENCODABLE_REASON = "internal error: the answer could not be encoded"


@dataclass(slots=True)
class Turn:
    """The effects of the decisions since the previous turn, in the order they were made."""

    batch: Batch = field(default_factory=Batch)
    events: list[Event] = field(default_factory=list)
    orders: list[AgentOrder] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    settles: list[tuple[Delivery, Settle]] = field(default_factory=list)
    # Requests whose answer could not be encoded: dead-lettered with this reason, not acked.
    failed: dict[Delivery, str] = field(default_factory=dict)
    lookups: list[Answer] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    # Set by the write stage: the events as published, and the turn's outbox id range.
    outgoing: list[Outgoing] = field(default_factory=list)
    outbox: tuple[int, int] | None = None

    def add(self, fx: Effects) -> None:
        """Book the rows, events and orders of one step's effects (its answers and
        settlements are booked by `Pipeline.submit`, which encodes the replies). Rows are
        encoded now (`Batch.put_*` raises `RowError` for a value the store cannot hold)."""
        batch = self.batch
        _put_state(batch, fx)
        if fx.events is not None:
            self.events += fx.events
        if fx.orders is not None:
            self.orders += fx.orders
        if fx.records is not None:
            for record in fx.records:
                batch.put_idempotency(record)
        if fx.evicted is not None:
            for user, message_id in fx.evicted:
                batch.delete_idempotency(user, message_id)

    def book(self, answer: Answer) -> EncodeError | None:
        """Book a reply to send, encoded now (`encode`); one to read from the store after
        the write (`reply` None) waits in `lookups`. Returns the encoding error, if any."""
        if answer.reply is None:
            self.lookups.append(answer)
            self.answers.append(answer)
            return None
        error = self.encode(answer)
        if error is None or answer.delivery is not None:
            self.answers.append(answer)  # a final reply that cannot be encoded is dropped
        return error

    def encode(self, answer: Answer) -> EncodeError | None:
        """Encode an answer's reply. One that cannot be encoded becomes a 500 for its request
        (dead-lettered); the caller drops a final reply of stream mode. Returns the error."""
        assert answer.reply is not None
        try:
            answer.message = reply_message(answer.reply_to, answer.correlation_id, answer.reply)
            return None
        except EncodeError as exc:
            error = exc
        if answer.delivery is not None:
            answer.reply = INTERNAL_ERROR
            answer.message = reply_message(answer.reply_to, answer.correlation_id,
                                           INTERNAL_ERROR)
            self.failed[answer.delivery] = UNENCODABLE_REASON
        return error

    def fail(self, delivery: Delivery, reply_to: str | None, kind: str | None,
             started: float, reason: str) -> None:
        """`delivery`'s request fails (`Pipeline.fail`): 500, then dead-lettered."""
        self.failed[delivery] = reason
        # Raised after its answer and settlement were booked (same synchronous step, so
        # in this turn): that answer becomes the 500, the settlement the dead-lettering.
        booked = [a for a in self.answers if a.delivery is delivery]
        for answer in booked:
            answer.reply = INTERNAL_ERROR
            answer.message = reply_message(answer.reply_to, answer.correlation_id,
                                           INTERNAL_ERROR)
        if reply_to is not None and not booked:
            self.answers.append(Answer(
                reply_to, delivery.correlation_id, INTERNAL_ERROR, delivery, kind, started,
                message=reply_message(reply_to, delivery.correlation_id, INTERNAL_ERROR)))
        if not any(d is delivery for d, _ in self.settles):
            self.settles.append((delivery, Settle.ACK))


def _put_state(batch: Batch, fx: Effects) -> None:
    """The VM, history, task and node rows of `fx`, encoded into `batch` now."""
    if fx.vms is not None:
        for vm in fx.vms:
            batch.put_vm(vm)
    if fx.history is not None:
        for change, at in fx.history:
            batch.put_history(change, at)  # the power history, same transaction
    if fx.tasks is not None:
        for task in fx.tasks:
            batch.put_task(task)
    if fx.nodes is not None:
        for node in fx.nodes:
            batch.put_node(node)
