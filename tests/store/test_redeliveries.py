"""`Store.count_redelivery`: the delivery limit's durable count (vmd.daemon.poison)."""

from __future__ import annotations

from vmd.store import RETENTION, Store

from .conftest import Target

NOW = 1_800_000_000.0
A = b"a" * 16
B = b"b" * 16


def test_counts_survive_a_reopen_and_go_after_the_retention(target: Target) -> None:
    with Store.open(target) as store:
        assert [store.count_redelivery(A, NOW + i) for i in range(3)] == [1, 2, 3]
        assert store.count_redelivery(B, NOW) == 1
    with Store.open(target) as store:  # durable: what a process that died had counted
        assert store.count_redelivery(A, NOW + 10) == 4
        # First seen more than the retention ago: forgotten, counted afresh.
        assert store.count_redelivery(B, NOW + RETENTION + 1) == 1
        assert store.count_redelivery(A, NOW + RETENTION + 1) == 1
