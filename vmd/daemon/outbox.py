"""The outbox (vmd.store.outbox): what a turn stores with its state, so that a crash between
its write and its publish loses nothing, and what start-up publishes again.

The write stage (vmd.daemon.commit) stores the turn's events, orders and stream mode's final
replies in the same transaction as its state; once the broker confirmed them, their deletion
rides on a later turn's write (or an idle write after `OUTBOX_IDLE` s). At start-up
`Pipeline.replay` puts what the store still holds in front of the first turn, so a crash
between a write and its publish loses no event (no `seq` gap), no order and no final reply:
at-least-once, never at-most-once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import MappingProxyType

from vmd.bus import AgentOrder, Outgoing, decode_object, order_from_json, order_message
from vmd.daemon.options import Clock
from vmd.daemon.turn import Turn
from vmd.store import EVENT, ORDER, REPLY, OutboxMessage

# Seconds after a publish before its outbox rows are deleted by a write of their own, when
# no other turn came to carry the deletion (at most one such write per this period).
OUTBOX_IDLE = 1.0


def store_outbox(turn: Turn, last_id: int, clock: Clock) -> int:
    """Book the turn's outbox rows in its batch, with ids after `last_id`, and its events'
    messages in `turn.outgoing`; returns the last id given."""
    # Encoded once: the same bytes are stored and published. An order is stored as its
    # JSON; its TTL is computed when it is published (`Pipeline._publish`, `replay`).
    batch = turn.batch
    first = n = last_id
    for event in turn.events:
        message = event.outgoing()
        turn.outgoing.append(message)
        n += 1
        batch.put_outbox(OutboxMessage(n, EVENT, message.exchange, message.routing_key,
                                       message.body))
    for order in turn.orders:
        message = order_message(order, now=clock())
        n += 1
        batch.put_outbox(OutboxMessage(n, ORDER, message.exchange, message.routing_key,
                                       message.body))
    for answer in turn.answers:
        # Stream mode's final replies (no request of theirs to redeliver): a crash before
        # they are published must not lose them. Replies to a request are not stored:
        # the request, unacked, comes again and is answered from its idempotency record.
        if answer.delivery is None and answer.message is not None:
            message = answer.message
            n += 1
            batch.put_outbox(OutboxMessage(n, REPLY, message.exchange, message.routing_key,
                                           message.body, dict(message.headers),
                                           message.correlation_id))
    if n > first:
        turn.outbox = (first + 1, n)
    return n


def replay_turn(stored: Sequence[OutboxMessage], due: Callable[[AgentOrder], bool]) -> Turn:
    """The turn that publishes the stored outbox again, in id order: events and final
    replies as they were stored, orders decoded (re-encoded when published: a fresh TTL),
    those `due` refuses left out. `stored` is not empty."""
    turn = Turn()
    for message in stored:
        if message.kind == EVENT:
            # As `Event.outgoing` builds it: persistent, confirmed, not mandatory.
            turn.outgoing.append(Outgoing(
                message.exchange, message.routing_key, message.body, mandatory=False,
                headers=MappingProxyType(dict(message.headers or {}))))
        elif message.kind == REPLY:
            # A final reply of stream mode, as `reply_message` builds it.
            turn.outgoing.append(Outgoing(
                message.exchange, message.routing_key, message.body, mandatory=False,
                persistent=False, headers=MappingProxyType(dict(message.headers or {})),
                correlation_id=message.correlation_id))
        else:
            order = order_from_json(decode_object(message.body, limit=None))
            if due(order):
                turn.orders.append(order)
    turn.outbox = (stored[0].id, stored[-1].id)
    return turn
