"""Retention: ended tasks and idempotency keys go after 24 h, by an explicit purge(now)."""

from __future__ import annotations

from support.store import put

from vmd.store import RETENTION, Batch, Purged, Store

from .conftest import Target
from .factories import NOW, ended_task, pending_task, record


def test_retention_is_24_hours() -> None:
    assert RETENTION == 24 * 3600


def test_purge_removes_only_ended_tasks_older_than_retention(store: Store) -> None:
    old = ended_task(1, ended=NOW - RETENTION - 1)
    boundary = ended_task(2, ended=NOW - RETENTION)
    young = ended_task(3, ended=NOW - 1)
    ancient_pending = pending_task(4)
    ancient_pending.created = NOW - 10 * RETENTION
    ancient_pending.deadline = NOW - 9 * RETENTION
    batch = Batch()
    for task in (old, boundary, young, ancient_pending):
        batch.put_task(task)
    store.write(batch)

    assert store.purge(NOW) == Purged(tasks=1, idempotency=0)

    assert store.get_task(old.task_id) is None
    assert store.get_task(boundary.task_id) == boundary
    assert store.get_task(young.task_id) == young
    assert store.get_task(ancient_pending.task_id) == ancient_pending
    assert store.purge(NOW) == Purged(tasks=0, idempotency=0)
    assert store.purge(NOW + RETENTION) == Purged(tasks=2, idempotency=0)


def test_purge_removes_idempotency_keys_older_than_retention(store: Store) -> None:
    old = record("old", created=NOW - RETENTION - 0.001)
    young = record("young", created=NOW - RETENTION + 1)
    put(store, old)
    put(store, young)

    # Expired keys are not answered even before a purge has run.
    assert store.get_idempotency("alice", "old", NOW) is None
    assert set(store.load_fleet(NOW).idempotency) == {("alice", "young")}

    assert store.purge(NOW) == Purged(tasks=0, idempotency=1)
    assert store.get_idempotency("alice", "old", NOW - RETENTION) is None
    assert store.get_idempotency("alice", "young", NOW) == young


def test_retention_is_configurable(target: Target) -> None:
    with Store.open(target, retention=10.0) as store:
        put(store, ended_task(1, ended=NOW - 11))
        put(store, record("m", created=NOW - 11))
        assert store.get_idempotency("alice", "m", NOW - 2) == record("m", created=NOW - 11)
        assert store.purge(NOW) == Purged(tasks=1, idempotency=1)
