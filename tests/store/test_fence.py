"""The fence hook (`Store.fence`): run first in every write transaction, on both backends; a
`Fenced` from it rolls the whole transaction back and reaches the caller unchanged."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from support.store import put

from vmd.store import Batch, Fenced, Store
from vmd.store.dialect import Connection

from .conftest import Target
from .factories import NOW, full_vm, record


class Gate:
    """A fence that records what it saw and refuses once closed."""

    def __init__(self) -> None:
        self.calls: list[bool] = []
        self.open = True

    def __call__(self, conn: Connection) -> None:
        # Inside the transaction, before any row: the store's own tables are still empty
        # of this write's rows (the fence sees the database as it was).
        self.calls.append(conn.in_transaction)
        (count,) = conn.execute("SELECT count(*) FROM vms").fetchone()
        if not self.open:
            raise Fenced(f"closed (vms: {count})")


def _writes(store: Store) -> list[Callable[[], object]]:
    batch = Batch()
    batch.put_vm(full_vm(1))
    batch.put_idempotency(record())
    return [lambda: store.write(batch), lambda: store.count_redelivery(b"d" * 16, NOW),
            lambda: store.purge(NOW), lambda: store.purge_history(NOW)]


def test_runs_first_in_every_write_transaction_and_not_for_reads(target: Target) -> None:
    gate = Gate()
    with Store.open(target, fence=gate) as store:
        for write in _writes(store):
            write()
        assert gate.calls == [True] * 4
        store.write(Batch())  # an empty batch writes nothing: no fence
        store.load_fleet(NOW)
        store.get_vm(full_vm(1).uuid)
        store.load_outbox()
        assert len(gate.calls) == 4
        assert store.get_vm(full_vm(1).uuid) == full_vm(1)


def test_fenced_rolls_back_and_reaches_the_caller(target: Target) -> None:
    gate = Gate()
    with Store.open(target) as store:
        store.fence = gate  # set after open, as a daemon does once it leads
        gate.open = False
        for write in _writes(store):
            with pytest.raises(Fenced, match=r"^closed \(vms: 0\)$"):
                write()
        assert store.get_vm(full_vm(1).uuid) is None
        assert store.load_fleet(NOW).idempotency == {}
        # The connection is usable again (no transaction left open), and a fence cleared
        # lets the same writes through.
        store.fence = None
        _writes(store)[0]()
        assert store.get_vm(full_vm(1).uuid) == full_vm(1)


def test_a_failing_fence_leaves_the_connection_usable(
        target: Target, raw: Callable[[], Connection]) -> None:
    def broken(conn: Connection) -> None:
        conn.execute("SELECT * FROM no_such_table")

    with Store.open(target, fence=broken) as store:
        with pytest.raises(Exception, match="no_such_table"):
            put(store, full_vm(1))
        store.fence = None
        put(store, full_vm(2))
    conn = raw()
    assert conn.execute("SELECT uuid FROM vms").fetchall() == [(full_vm(2).uuid,)]
