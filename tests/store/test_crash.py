"""SIGKILL during writes: every acknowledged batch survives, no batch is half there.

A real child process (crash_writer.py) writes numbered batches in a loop and prints each
number after `Store.write` returned. We kill it with SIGKILL at a random moment (often in
the middle of a write, since writing is all it does), then reopen the store (the file, or
the database: a client killed mid-transaction is rolled back by the server).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from vmd.store import Store

from . import crash_writer
from .conftest import Target, connect

WRITER = Path(crash_writer.__file__)


def _run_and_kill(target: Target, rng: random.Random) -> int:
    """Start the writer, SIGKILL it after a random number of acks plus a random delay;
    return the last acknowledged batch number."""
    child = subprocess.Popen(
        [sys.executable, str(WRITER), str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        target = rng.randrange(3, 40)
        acked = -1
        while acked < target:
            line = child.stdout.readline()
            assert line.endswith("\n"), (
                f"writer died: {child.stderr.read() if child.stderr else ''}"
            )
            acked = int(line)
        # A random moment inside the next batches: 0-30 ms (a batch takes several ms).
        time.sleep(rng.uniform(0, 0.03))
        os.kill(child.pid, signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    # Lines printed before the kill are acknowledged too; a cut line cannot be one.
    for line in out.splitlines(keepends=True):
        if line.endswith("\n"):
            acked = int(line)
    return acked


@pytest.mark.slow
@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed-{s}") for s in (1, 2, 3, 4)])
def test_sigkill_keeps_acknowledged_batches_and_no_partial_one(target: Target,
                                                               seed: int) -> None:
    rng = random.Random(seed)
    acked = _run_and_kill(target, rng)
    assert acked >= 3

    # A plain connection first: it recovers the WAL like any reader would.
    conn = connect(target)
    try:
        if conn.dialect == "sqlite":
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        keys = sorted(int(m) for (m,) in conn.execute("SELECT message_id FROM idempotency"))
        per_batch = Counter(
            int(task_id.split("-")[1]) for (task_id,) in conn.execute("SELECT task_id FROM tasks")
        )
        seqs = Counter(seq for (seq,) in conn.execute("SELECT seq FROM vms"))
    finally:
        conn.close()

    last = keys[-1]
    # Every acknowledged batch is there; at most one more (committed, killed before printing).
    assert last in (acked, acked + 1)
    assert keys == list(range(last + 1))
    # Each stored batch is whole: all its tasks, and the VMs all carry the last batch's seq.
    assert per_batch == dict.fromkeys(range(last + 1), crash_writer.TASKS)
    assert seqs == {last: crash_writer.VMS}

    with Store.open(target) as store:
        fleet = store.load_fleet(float(last))
    assert {vm.seq for vm in fleet.vms.values()} == {last}
    assert len(fleet.tasks) == crash_writer.TASKS * (last + 1)
