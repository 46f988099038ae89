"""Child process for test_crash: writes numbered batches forever, printing each one acked.

    python crash_writer.py STORE  (a path or a postgresql:// URL)

Batch i upserts the same VMS VMs with seq=i, inserts TASKS new tasks `0-<i>-<j>` and one
idempotency key `str(i)`. A line `i` is printed only after `Store.write` returned, so
every printed number is an acknowledged write. The parent SIGKILLs this process at a
random moment and checks what survived.
"""

from __future__ import annotations

import sys

from vmd.model import Action, NodeName, Reply, Task, TaskId, Vm, VmStatus, VmUuid
from vmd.store import Batch, IdempotencyRecord, Store

VMS = 200
TASKS = 20


def main(path: str) -> None:
    store = Store.open(path)
    i = 0
    while True:
        batch = Batch()
        for j in range(VMS):
            batch.put_vm(
                Vm(
                    VmUuid(f"{j:08x}-0000-4000-8000-{j:012x}"),
                    f"vm{j}.example.com",
                    f"vm{j}",
                    "owner",
                    NodeName("cn01"),
                    status=VmStatus.RUNNING if i % 2 else VmStatus.STOPPED,
                    status_change=float(i),
                    seq=i,
                )
            )
        for j in range(TASKS):
            batch.put_task(
                Task(
                    TaskId(f"0-{i}-{j}"),
                    VmUuid(f"{j:08x}-0000-4000-8000-{j:012x}"),
                    Action.START,
                    "PUT",
                    {"batch": i},
                    created=float(i),
                    deadline=float(i + 300),
                )
            )
        batch.put_idempotency(
            IdempotencyRecord("writer", str(i), (Reply(201, {"batch": i}),), float(i))
        )
        store.write(batch)
        sys.stdout.write(f"{i}\n")
        sys.stdout.flush()
        i += 1


if __name__ == "__main__":
    main(sys.argv[1])
