"""The outbox: written with the turn's state in one transaction, deleted by id range, back in
id order after a reopen; a store of the previous schema version migrates with it empty."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vmd.store import EVENT, ORDER, SCHEMA_VERSION, Batch, OutboxMessage, Store
from vmd.store.dialect import Connection
from vmd.store.rows import VMS, vm_row
from vmd.store.schema import APPLICATION_ID, MIGRATIONS, migrate

from .conftest import Target, integrity_error, tables
from .factories import NOW, bare_vm, full_vm


def _message(n: int, kind: str = EVENT) -> OutboxMessage:
    if kind == ORDER:
        return OutboxMessage(n, ORDER, "vmd.agent", "task.node1", b'{"kind":"task"}',
                             {"x-n": n})
    return OutboxMessage(n, EVENT, "vmd.events", f"vm.x.{n}.status_change",
                         bytes([0, 255]) + f'{{"seq":{n}}}'.encode())


def test_round_trip_in_id_order_and_range_delete(target: Target) -> None:
    vm = full_vm()
    messages = [_message(1), _message(2, ORDER), _message(3), _message(4)]
    with Store.open(target) as store:
        assert store.load_outbox() == []
        batch = Batch()
        batch.put_vm(vm)
        for message in reversed(messages):  # stored order is the id order, not insert order
            batch.put_outbox(message)
        assert len(batch) == 5
        store.write(batch)
        assert store.load_outbox() == messages
        # Confirmed: deleted in a later batch, with other changes.
        batch = Batch()
        batch.delete_outbox(1, 2)
        batch.put_vm(bare_vm(2))
        store.write(batch)
        assert store.load_outbox() == messages[2:]
    with Store.open(target) as store:
        assert store.load_outbox() == messages[2:]
        assert store.load_fleet(NOW).vms[vm.uuid] == vm
        batch = Batch()
        batch.delete_outbox(3, 4)
        assert len(batch) == 1
        store.write(batch)
        assert store.load_outbox() == []


def test_outbox_rows_and_state_are_one_transaction(store: Store) -> None:
    store.write(_one(_message(1)))
    batch = _one(_message(1))  # the same id again: the write fails as a whole
    vm = full_vm()
    batch.put_vm(vm)
    with pytest.raises(integrity_error(store)):
        store.write(batch)
    assert store.get_vm(vm.uuid) is None
    assert store.load_outbox() == [_message(1)]


def _one(message: OutboxMessage) -> Batch:
    batch = Batch()
    batch.put_outbox(message)
    return batch


def test_previous_version_migrates_with_an_empty_outbox(
        target: Target, raw: Callable[[], Connection]) -> None:
    vm = full_vm()
    conn = raw()
    try:
        assert migrate(conn, str(target), MIGRATIONS[:1]) == 0
        conn.execute(VMS.upsert_sql, vm_row(vm))
        assert conn.header()[1] == 1
        assert not tables(conn) & {"outbox"}
    finally:
        conn.close()
    with Store.open(target) as store:
        settings = store.settings()
        assert settings["schema_version"] == SCHEMA_VERSION == 5
        assert settings["application_id"] == APPLICATION_ID
        assert store.load_outbox() == []
        assert store.load_fleet(NOW).vms == {vm.uuid: vm}
        store.write(_one(_message(7)))
        assert store.load_outbox() == [_message(7)]
