"""The store works under vmd.service's MemoryDenyWriteExecute=yes, on both backends: the
PostgreSQL one loads psycopg's bundled libpq (and its OpenSSL), which must need no memory
both writable and executable. Linux >= 6.3 offers the same rule to any process
(PR_SET_MDWE), so a child applies it to itself and writes and restores a VM."""

from __future__ import annotations

from support.mdwe import run_under_mdwe

from .conftest import Target

CHILD = """
    import sys
    from vmd.model import NodeName, Vm, VmUuid
    from vmd.store import Batch, Store
    with Store.open(sys.argv[1]) as store:
        batch = Batch()
        batch.put_vm(Vm(VmUuid("u1"), "web01.example.com", "web01", "o", NodeName("cn01")))
        store.write(batch)
        print(len(store.load_fleet(0.0).vms), store.dialect)
"""


def test_the_store_runs_under_memory_deny_write_execute(target: Target) -> None:
    done = run_under_mdwe(CHILD, str(target), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["1", "sqlite" if "://" not in str(target) else "postgresql"]
