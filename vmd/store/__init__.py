"""Durable state in SQLite or PostgreSQL: VMs, nodes, tasks, idempotency keys and the outbox.

The daemon's entry points: `Store.open(target)` (a path or a postgresql:// URL),
`Store.write(Batch)` (one transaction per event-loop turn), `Store.load_fleet(now)`
(restore after a restart), `Store.purge(now)`.
See docs/store.md.
"""

from vmd.store.batch import Batch
from vmd.store.outbox import EVENT, ORDER, REPLY, OutboxMessage
from vmd.store.records import (
    RETENTION,
    Fenced,
    Fleet,
    IdempotencyKey,
    IdempotencyRecord,
    Purged,
    RowError,
    StoreError,
    StoreUnavailable,
)
from vmd.store.schema import SCHEMA_VERSION
from vmd.store.store import Fence, Store

__all__ = [
    "EVENT",
    "ORDER",
    "REPLY",
    "RETENTION",
    "SCHEMA_VERSION",
    "Batch",
    "Fence",
    "Fenced",
    "Fleet",
    "IdempotencyKey",
    "IdempotencyRecord",
    "OutboxMessage",
    "Purged",
    "RowError",
    "Store",
    "StoreError",
    "StoreUnavailable",
]
