"""The outbox (vmd.store.outbox): what a turn stores with its state, so that a crash between
its write and its publish loses nothing, and what start-up publishes again.

The write stage (vmd.daemon.commit) stores the turn's events, orders and stream mode's final
replies in the same transaction as its state; once the broker confirmed them, their deletion
rides on a later turn's write (or an idle write after `OUTBOX_IDLE` s). At start-up
`Pipeline.replay` puts what the store still holds in front of the first turn, so a crash
between a write and its publish loses no event (no `seq` gap), no order and no final reply:
at-least-once, never at-most-once.

Events and final replies are stored as the messages vmd.bus encoded (`Event.outgoing`,
`reply_message`: the bytes, routing, headers and correlation id) and replayed as those same
messages (`stored`, `replayed`; their fixed properties, such as persistence, come from one
message each builder makes, `_SHAPES`, so no wire rule is written here a second time).
Orders are stored as their JSON and published again through `order_message`, because
their TTL is the time left to their deadline when they are published.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from types import MappingProxyType

from vmd.bus import (
    AgentOrder,
    AgentTask,
    Event,
    Outgoing,
    decode_object,
    order_from_json,
    order_message,
    reply_message,
)
from vmd.daemon.options import Clock
from vmd.daemon.turn import Turn
from vmd.fsm import World
from vmd.model import Reply
from vmd.store import EVENT, ORDER, REPLY, OutboxMessage

# Seconds after a publish before its outbox rows are deleted by a write of their own, when
# no other turn came to carry the deletion (at most one such write per this period).
OUTBOX_IDLE = 1.0

# What a stored message does not hold (delivery mode, mandatory, content type), as the bus's
# builders set it for each kind.
_SHAPES = {EVENT: Event("", {}).outgoing(), REPLY: reply_message("", None, Reply(200, {}))}


def stored(n: int, kind: str, message: Outgoing) -> OutboxMessage:
    """Outbox row `n` for a message as the bus encoded it."""
    return OutboxMessage(n, kind, message.exchange, message.routing_key, message.body,
                         dict(message.headers) or None, message.correlation_id)


def replayed(row: OutboxMessage) -> Outgoing:
    """The message `stored` kept in `row` (an event or a final reply), to publish again."""
    return dataclasses.replace(
        _SHAPES[row.kind], exchange=row.exchange, routing_key=row.routing_key, body=row.body,
        headers=MappingProxyType(dict(row.headers or {})), correlation_id=row.correlation_id)


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
        batch.put_outbox(stored(n, EVENT, message))
    for order in turn.orders:
        message = order_message(order, now=clock())
        n += 1
        batch.put_outbox(stored(n, ORDER, message))
    for answer in turn.answers:
        # Stream mode's final replies (no request of theirs to redeliver): a crash before
        # they are published must not lose them. Replies to a request are not stored:
        # the request, unacked, comes again and is answered from its idempotency record.
        if answer.delivery is None and answer.message is not None:
            n += 1
            batch.put_outbox(stored(n, REPLY, answer.message))
    if n > first:
        turn.outbox = (first + 1, n)
    return n


def still_due(order: AgentOrder, world: World, now: float) -> bool:
    """Whether a stored order goes out again at start-up (the `due` of `replay_turn`), in the
    world just restored and after the start-up expiries ran.

    A task's order is left out when its task ended (its result was stored before the crash)
    or is past its deadline (the expiry path ends it and answers for it): sending it again
    would run a command nobody waits for. Any other order (a `SyncRequest`) always goes:
    asking an agent for a full sync twice is harmless.
    """
    if not isinstance(order, AgentTask):
        return True
    task = world.tasks.get(order.task_id)
    return task is not None and not task.done and task.deadline > now


def replay_turn(rows: Sequence[OutboxMessage], due: Callable[[AgentOrder], bool]) -> Turn:
    """The turn that publishes the stored outbox again, in id order: events and final
    replies as they were stored, orders decoded (re-encoded when published: a fresh TTL),
    those `due` refuses left out. `rows` is not empty."""
    turn = Turn()
    for row in rows:
        if row.kind == ORDER:
            order = order_from_json(decode_object(row.body, limit=None))
            if due(order):
                turn.orders.append(order)
        else:
            turn.outgoing.append(replayed(row))
    turn.outbox = (rows[0].id, rows[-1].id)
    return turn
