"""The store works under vmd.service's MemoryDenyWriteExecute=yes, on both backends: the
PostgreSQL one loads psycopg's bundled libpq (and its OpenSSL), which must need no memory
both writable and executable. Linux >= 6.3 offers the same rule to any process
(PR_SET_MDWE), so a child applies it to itself and writes and restores a VM."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from .conftest import Target

CHILD = textwrap.dedent("""
    import ctypes, mmap, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        print("unsupported", os.strerror(ctypes.get_errno()))
        sys.exit(3)
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        sys.exit("W+X memory was allowed: the rule is not in force")
    except OSError:
        pass
    from vmd.model import NodeName, Vm, VmUuid
    from vmd.store import Batch, Store
    with Store.open(sys.argv[1]) as store:
        batch = Batch()
        batch.put_vm(Vm(VmUuid("u1"), "web01.example.com", "web01", "o", NodeName("cn01")))
        store.write(batch)
        print(len(store.load_fleet(0.0).vms), store.dialect)
""")


def test_the_store_runs_under_memory_deny_write_execute(target: Target) -> None:
    done = subprocess.run([sys.executable, "-c", CHILD, str(target)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if done.returncode == 3:
        pytest.skip(f"kernel has no PR_SET_MDWE (Linux >= 6.3): {done.stdout.strip()}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["1", "sqlite" if "://" not in str(target) else "postgresql"]
