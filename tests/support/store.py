"""Write a few rows to a `vmd.store.Store` in one call, for tests that set up stored state.

The product writes only through `Store.write(Batch)` (one transaction per daemon turn);
this module is the tests' shorthand for "a batch with these rows, written". It lives here,
not on `Store`, because nothing in vmd/ needs a one-row write (issue 13: no test-only API in
product code). Deletes have no shorthand: their keys (a VM's uuid, a node's name, a task id)
are all strings, so a test that deletes builds its `Batch` and says which table it means.
"""

from __future__ import annotations

from vmd.model import Node, Task, Vm
from vmd.store import Batch, IdempotencyRecord, Store

Row = Vm | Node | Task | IdempotencyRecord


def put(store: Store, *rows: Row) -> None:
    """Upsert `rows` (VMs, nodes, tasks, idempotency records, mixed) in one `Batch`, so in
    one transaction: durable when this returns, like any `Store.write`."""
    batch = Batch()
    for row in rows:
        if isinstance(row, Vm):
            batch.put_vm(row)
        elif isinstance(row, Node):
            batch.put_node(row)
        elif isinstance(row, Task):
            batch.put_task(row)
        elif isinstance(row, IdempotencyRecord):
            batch.put_idempotency(row)
        else:
            raise TypeError(f"not a stored row: {row!r}")
    store.write(batch)
