"""Batches: last change wins, a snapshot at add time, all or nothing, one thread at a time."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
from support.store import put

from vmd.model import VmStatus, VmUuid
from vmd.store import Batch, RowError, Store
from vmd.store.batch import Changes
from vmd.store.rows import MAX_KEY_BYTES

from .conftest import integrity_error
from .factories import NOW, bare_vm, full_node, full_vm, pending_task, record


def test_last_change_of_a_key_wins(store: Store) -> None:
    kept, dropped = full_vm(1), full_vm(2)
    put(store, dropped)
    batch = Batch()
    batch.delete_vm(kept.uuid)
    batch.put_vm(kept)  # put after delete: a put
    batch.put_vm(dropped)
    batch.delete_vm(dropped.uuid)  # delete after put: a delete
    first = bare_vm(3)
    batch.put_vm(first)
    second = bare_vm(3)
    second.status = VmStatus.RUNNING
    batch.put_vm(second)  # two puts: one row, the last
    assert len(batch) == 3
    store.write(batch)
    assert store.load_fleet(NOW).vms == {kept.uuid: kept, second.uuid: second}


def test_batch_holds_a_snapshot_taken_when_added(store: Store) -> None:
    vm = full_vm()
    batch = Batch()
    batch.put_vm(vm)
    vm.status, vm.seq = VmStatus.RUNNING, vm.seq + 1
    assert vm.pending_definition is not None
    vm.pending_definition["ram"] = 1
    store.write(batch)
    stored = store.get_vm(vm.uuid)
    assert stored == full_vm()
    assert stored != vm


def test_failing_batch_writes_nothing_and_store_stays_usable(store: Store) -> None:
    before = full_vm(1)
    put(store, before)
    changed = full_vm(1)
    changed.seq += 1
    bad = pending_task(2)
    bad.deadline = None  # type: ignore[assignment]  # violates NOT NULL mid-transaction
    batch = Batch()
    batch.put_vm(changed)
    batch.put_vm(bare_vm(3))
    batch.put_node(full_node())
    batch.put_task(bad)
    batch.put_idempotency(record())
    with pytest.raises(integrity_error(store), match=r"NOT NULL|not-null"):
        store.write(batch)

    fleet = store.load_fleet(NOW)
    assert fleet.vms == {before.uuid: before}
    assert (fleet.nodes, fleet.tasks, fleet.idempotency) == ({}, {}, {})
    put(store, changed)
    assert store.get_vm(changed.uuid) == changed


def test_unencodable_record_fails_when_added_not_when_written() -> None:
    vm = full_vm()
    vm.pending_definition = {"ram": float("nan")}
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        Batch().put_vm(vm)


def test_empty_batch_is_a_no_op(store: Store) -> None:
    batch = Batch()
    assert len(batch) == 0
    store.write(batch)
    assert store.load_fleet(NOW).vms == {}


def test_one_dedicated_writer_thread(store: Store) -> None:
    vms = [full_vm(i) for i in range(1, 6)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="store") as writer:
        for vm in vms:
            batch = Batch()
            batch.put_vm(vm)
            writer.submit(store.write, batch).result()
    assert store.load_fleet(NOW).vms == {vm.uuid: vm for vm in vms}


class _BlockingBatch(Batch):
    """A batch that stops inside `Store.write` until released."""

    __slots__ = ("entered", "release")

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def changes(self) -> Iterator[Changes]:
        self.entered.set()
        assert self.release.wait(30)
        yield from super().changes()


def test_two_threads_at_once_is_a_loud_error(store: Store) -> None:
    batch = _BlockingBatch()
    vm = full_vm()
    batch.put_vm(vm)
    errors: list[Any] = []

    def write() -> None:
        try:
            store.write(batch)
        except BaseException as exc:  # pragma: no cover - reported through the list
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert batch.entered.wait(30)
        with pytest.raises(RuntimeError, match="Store used by two threads at once"):
            store.get_vm(vm.uuid)
    finally:
        batch.release.set()
        writer.join(30)
    assert errors == []
    assert store.get_vm(vm.uuid) == vm


@pytest.mark.parametrize(
    ("alias", "reason"),
    [
        pytest.param("web\x00", "a string holds a NUL character (U+0000)", id="nul"),
        pytest.param("web\ud800", "a string is not UTF-8 (a lone surrogate)", id="surrogate"),
    ],
)
def test_a_value_neither_backend_can_hold_fails_when_added(store: Store, alias: str,
                                                          reason: str) -> None:
    # Refused on both backends alike (PostgreSQL's text holds no NUL), so such a record
    # fails its own request, never the write of a whole turn.
    vm = full_vm()
    vm.alias = alias
    batch = Batch()
    with pytest.raises(RowError, match=re.escape(reason)):
        batch.put_vm(vm)
    batch.put_vm(full_vm(2))
    store.write(batch)
    assert set(store.load_fleet(NOW).vms) == {full_vm(2).uuid}


@pytest.mark.parametrize(
    ("uuid", "stored"),
    [
        pytest.param("u" * MAX_KEY_BYTES, True, id="at-the-bound"),
        pytest.param("u" * (MAX_KEY_BYTES + 1), False, id="one-byte-over"),
        pytest.param("\u00e9" * (MAX_KEY_BYTES // 2 + 1), False, id="utf8-bytes-over"),
        pytest.param("u" * 4000, False, id="4000-bytes"),
    ],
)
def test_a_key_longer_than_the_bound_fails_when_added(store: Store, uuid: str,
                                                     stored: bool) -> None:
    # PostgreSQL's btree refuses an index entry over 2704 bytes and would fail the whole
    # turn's write (SQLite stores any length); a VM's uuid is what an agent reported. At the
    # bound the row is stored and read back on both backends; over it the record is
    # refused when added, and the rest of the batch is written.
    vm = full_vm()
    vm.uuid = VmUuid(uuid)
    batch = Batch()
    if stored:
        batch.put_vm(vm)
    else:
        with pytest.raises(RowError, match="over the store's 1024"):
            batch.put_vm(vm)
    batch.put_vm(full_vm(2))
    store.write(batch)
    expected = {full_vm(2).uuid, vm.uuid} if stored else {full_vm(2).uuid}
    assert set(store.load_fleet(NOW).vms) == expected


def test_an_idempotency_key_over_the_bound_fails_when_added(store: Store) -> None:
    batch = Batch()
    # The key is (user, message_id): their bytes together count.
    with pytest.raises(RowError, match="a key of 1025 bytes"):
        batch.put_idempotency(replace(record(), user="u" * 600, message_id="m" * 425))
    longest = replace(record(), user="u" * 255, message_id="m" * 255)  # AMQP's longest
    batch.put_idempotency(longest)
    store.write(batch)
    assert set(store.load_fleet(NOW).idempotency) == {("u" * 255, "m" * 255)}
