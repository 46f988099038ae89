"""The power history table (vmd.store.history): written with the batch, read newest first and
paged, kept per VM by count at write time and by age in bounded purges, kept over a reopen;
and the task's principal column (schema step 4) with the migration from step 3."""

from __future__ import annotations

from collections.abc import Callable

from support.store import put

from vmd.fsm import StatusChange
from vmd.fsm.history import HistoryEntry
from vmd.model import Cause, TaskId, Vm, VmStatus
from vmd.store import Batch, Store
from vmd.store.dialect import Connection
from vmd.store.rows import TASKS, VMS, task_row, vm_row
from vmd.store.schema import MIGRATIONS, migrate

from .conftest import Target
from .factories import NOW, full_vm, pending_task

S = VmStatus
STATUSES = (S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED)


def _changes(vm: Vm, n: int, first: int = 1) -> list[StatusChange]:
    out = []
    for seq in range(first, first + n):
        status = STATUSES[(seq - 1) % 4]
        previous = STATUSES[(seq - 2) % 4]
        cause = Cause.TASK if seq % 2 else Cause.NODE
        task = TaskId(f"0-task-{seq}") if cause is Cause.TASK else None
        out.append(StatusChange(vm, previous, status, NOW + seq, cause, task, seq,
                                "alice" if task else None))
    return out


def _write(store: Store, changes: list[StatusChange], recorded: float = NOW) -> None:
    batch = Batch()
    for c in changes:
        batch.put_history(c, recorded)
    store.write(batch)


def test_written_with_the_batch_and_read_newest_first(store: Store) -> None:
    vm, other = full_vm(1), full_vm(2)
    batch = Batch()
    batch.put_vm(vm)
    for c in _changes(vm, 3) + _changes(other, 2):
        batch.put_history(c, NOW)
    store.write(batch)
    got = store.read_history(vm.uuid, 50)
    assert [e.seq for e in got] == [3, 2, 1]
    assert got[0] == HistoryEntry(3, "stopping", "running", NOW + 3, "task", "0-task-3",
                                  "alice")
    assert (got[1].cause, got[1].task_id, got[1].principal) == ("node", None, None)
    assert [e.seq for e in store.read_history(other.uuid, 50)] == [2, 1]


def test_paging_with_limit_and_before(store: Store) -> None:
    vm = full_vm()
    _write(store, _changes(vm, 10))
    page = store.read_history(vm.uuid, 4)
    assert [e.seq for e in page] == [10, 9, 8, 7]
    page = store.read_history(vm.uuid, 4, before=page[-1].seq)
    assert [e.seq for e in page] == [6, 5, 4, 3]
    page = store.read_history(vm.uuid, 4, before=page[-1].seq)
    assert [e.seq for e in page] == [2, 1]
    assert store.read_history(vm.uuid, 4, before=1) == []
    assert store.read_history(full_vm(3).uuid, 4) == []


def test_count_is_kept_at_write_time(target: Target) -> None:
    vm = full_vm()
    with Store.open(target, history_keep=5) as store:
        _write(store, _changes(vm, 3))
        _write(store, _changes(vm, 4, first=4))  # seqs 4..7: 1 and 2 go
        assert [e.seq for e in store.read_history(vm.uuid, 50)] == [7, 6, 5, 4, 3]
        _write(store, _changes(vm, 20, first=8))  # one batch past the count
        assert [e.seq for e in store.read_history(vm.uuid, 50)] == [27, 26, 25, 24, 23]
    with Store.open(target, history_keep=0) as store:  # 0: nothing is written
        _write(store, _changes(vm, 1, first=28))
        assert store.read_history(vm.uuid, 1)[0].seq == 27


def test_purge_by_age_in_bounded_batches(target: Target) -> None:
    vm, other = full_vm(1), full_vm(2)
    with Store.open(target, history_retention=100.0) as store:
        _write(store, _changes(vm, 7), recorded=NOW - 500)
        _write(store, _changes(other, 3), recorded=NOW - 500)
        _write(store, _changes(vm, 2, first=8), recorded=NOW - 50)
        assert store.purge_history(NOW, limit=4) == 4
        assert store.purge_history(NOW, limit=4) == 4
        assert store.purge_history(NOW, limit=4) == 2
        assert store.purge_history(NOW, limit=4) == 0
        assert [e.seq for e in store.read_history(vm.uuid, 50)] == [9, 8]
        assert store.read_history(other.uuid, 50) == []
    with Store.open(target) as store:  # survives a reopen
        assert [e.seq for e in store.read_history(vm.uuid, 50)] == [9, 8]


def test_task_principal_round_trips_and_old_tasks_migrate(
        target: Target, raw: Callable[[], Connection]) -> None:
    old = pending_task(1)
    conn = raw()
    try:
        assert migrate(conn, str(target), MIGRATIONS[:3]) == 0
        columns = TASKS.columns[:-1]  # a step-3 tasks table has no principal
        conn.execute(f"INSERT INTO tasks ({', '.join(columns)}) VALUES "
                     f"({', '.join('?' * len(columns))})", task_row(old)[:-1])
        conn.execute(VMS.upsert_sql, vm_row(full_vm()))
    finally:
        conn.close()
    with Store.open(target) as store:
        restored = store.get_task(old.task_id)
        assert restored is not None and restored.principal is None
        new = pending_task(2)
        new.principal = "alice"
        put(store, new)
        assert store.load_fleet(NOW).tasks[new.task_id].principal == "alice"
        assert store.read_history(full_vm().uuid, 10) == []
