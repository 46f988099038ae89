"""Schema step 3: the outbox holds stream mode's final replies too (kind `reply`, with the
reply's correlation id); a store of step 2 keeps its outbox rows through the migration.
Found by the fault suite (tests/reliability: daemon SIGKILL between a task's end and its
final reply, docs/reliability.md)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from vmd.store import EVENT, ORDER, REPLY, Batch, OutboxMessage, Store
from vmd.store.dialect import Connection
from vmd.store.schema import MIGRATIONS, migrate

from .conftest import Target

REPLY_MESSAGE = OutboxMessage(3, REPLY, "", "amq.rabbitmq.reply-to.g1h2AA==", b'{"code":200}',
                              {"code": 200}, "corr-\u00e9-1")


def test_a_reply_round_trips_with_its_correlation_id(target: Target) -> None:
    event = OutboxMessage(1, EVENT, "vmd.events", "vm.o.u.status_change", b'{"seq":1}')
    order = OutboxMessage(2, ORDER, "vmd.agent", "task.node1", b'{"kind":"task"}')
    with Store.open(target) as store:
        batch = Batch()
        for message in (REPLY_MESSAGE, order, event):
            batch.put_outbox(message)
        store.write(batch)
    with Store.open(target) as store:
        assert store.load_outbox() == [event, order, REPLY_MESSAGE]


def test_step_2_outbox_rows_survive_the_migration(
        target: Target, raw: Callable[[], Connection]) -> None:
    conn = raw()
    assert migrate(conn, str(target), MIGRATIONS[:2]) == 0
    insert = ("INSERT INTO outbox (id, kind, exchange, routing_key, body, headers) "
              "VALUES (?, ?, ?, ?, ?, NULL)")
    conn.execute(insert, (5, "event", "vmd.events", "node.n.status", b"{}"))
    with pytest.raises(conn.integrity_error):  # step 2 knows no replies
        conn.execute(insert, (6, "reply", "", "q", b"{}"))
    conn.close()
    with Store.open(target) as store:
        assert store.load_outbox() == [
            OutboxMessage(5, EVENT, "vmd.events", "node.n.status", b"{}")]
        batch = Batch()
        batch.put_outbox(dataclasses.replace(REPLY_MESSAGE, id=7))
        store.write(batch)
        assert [m.kind for m in store.load_outbox()] == [EVENT, REPLY]
