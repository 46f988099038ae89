"""The outbox: messages the daemon must publish, stored with the state they announce.

The daemon stores a turn's effects (VMs, tasks, nodes) and then publishes the turn's events
and agent orders. A crash between the two would lose the messages for good: subscribers see
a `seq` gap, and a task nobody sent only ends at its deadline. So each turn's messages are
written into the `outbox` table in the SAME transaction as its state (`Batch.put_outbox`),
deleted in a later transaction once the broker confirmed them (`Batch.delete_outbox`), and
whatever is still there at start-up is published again (`Store.load_outbox`).

The store does not interpret a message: it keeps the bytes and addressing the daemon gives
it (an event exactly as the bus sends it; an order as its JSON, so the daemon can re-encode
it with a fresh TTL; a final reply of stream mode as the bus sends it, with its correlation
id). Ids are given by the daemon, increasing in publish order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vmd.store.rows import Row

EVENT = "event"
ORDER = "order"
REPLY = "reply"  # a final reply of stream mode (to `routing_key` = the reply_to)

SELECT_SQL = (
    "SELECT id, kind, exchange, routing_key, body, headers, correlation_id FROM outbox "
    "ORDER BY id"
)
INSERT_SQL = (
    "INSERT INTO outbox (id, kind, exchange, routing_key, body, headers, correlation_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
DELETE_SQL = "DELETE FROM outbox WHERE id BETWEEN ? AND ?"


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One stored message. `kind` is `EVENT`, `ORDER` or `REPLY`; `headers` None = no
    headers; `correlation_id` only for a reply."""

    id: int
    kind: str
    exchange: str
    routing_key: str
    body: bytes
    headers: dict[str, Any] | None = None
    correlation_id: str | None = None


def outbox_row(message: OutboxMessage) -> Row:
    headers = None if not message.headers else json.dumps(message.headers, sort_keys=True)
    return (message.id, message.kind, message.exchange, message.routing_key,
            bytes(message.body), headers, message.correlation_id)


def outbox_from_row(row: Row) -> OutboxMessage:
    id_, kind, exchange, routing_key, body, headers, correlation_id = row
    return OutboxMessage(id_, kind, exchange, routing_key, bytes(body),
                         None if headers is None else json.loads(headers), correlation_id)
