"""Schema step 3: the outbox holds stream mode's final replies too (kind `reply`, with the
reply's correlation id); a store of step 2 keeps its outbox rows through the migration.
Found by the fault suite (tests/reliability: daemon SIGKILL between a task's end and its
final reply, docs/reliability.md)."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from vmd.store import EVENT, ORDER, REPLY, Batch, OutboxMessage, Store
from vmd.store.schema import MIGRATIONS, migrate

REPLY_MESSAGE = OutboxMessage(3, REPLY, "", "amq.rabbitmq.reply-to.g1h2AA==", b'{"code":200}',
                              {"code": 200}, "corr-\u00e9-1")


def test_a_reply_round_trips_with_its_correlation_id(tmp_path: Path) -> None:
    event = OutboxMessage(1, EVENT, "vmd.events", "vm.o.u.status_change", b'{"seq":1}')
    order = OutboxMessage(2, ORDER, "vmd.agent", "task.node1", b'{"kind":"task"}')
    with Store.open(tmp_path / "s.sqlite3") as store:
        batch = Batch()
        for message in (REPLY_MESSAGE, order, event):
            batch.put_outbox(message)
        store.write(batch)
    with Store.open(tmp_path / "s.sqlite3") as store:
        assert store.load_outbox() == [event, order, REPLY_MESSAGE]


def test_step_2_outbox_rows_survive_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert migrate(conn, str(path), MIGRATIONS[:2]) == 0
        conn.execute("INSERT INTO outbox (id, kind, exchange, routing_key, body, headers) "
                     "VALUES (5, 'event', 'vmd.events', 'node.n.status', x'7b7d', NULL)")
        with pytest.raises(sqlite3.IntegrityError):  # step 2 knows no replies
            conn.execute("INSERT INTO outbox (id, kind, exchange, routing_key, body) "
                         "VALUES (6, 'reply', '', 'q', x'7b7d')")
    finally:
        conn.close()
    with Store.open(path) as store:
        assert store.load_outbox() == [
            OutboxMessage(5, EVENT, "vmd.events", "node.n.status", b"{}")]
        batch = Batch()
        batch.put_outbox(dataclasses.replace(REPLY_MESSAGE, id=7))
        store.write(batch)
        assert [m.kind for m in store.load_outbox()] == [EVENT, REPLY]
