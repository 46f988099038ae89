"""A batch: the effects of one event-loop turn, written by `Store.write` in one transaction.

The daemon adds every record it changed during a turn (VM upserts, task upserts,
idempotency records, deletions) and hands the batch to the store once, so one fsync covers
the whole turn and a crash never leaves half of it on disk.

Records are encoded to rows when they are added, not when they are written: after
`put_vm(vm)` returns, the batch holds a snapshot, and the event loop may go on mutating `vm`
while a writer thread commits the batch. The last change of a key in a batch wins: a put
after a delete of the same key is a put, a delete after a put is a delete, and two puts of
the same VM write one row.
"""

from __future__ import annotations

from collections.abc import Iterator

from vmd.fsm.decision import StatusChange
from vmd.model import Node, NodeName, Task, TaskId, Vm, VmUuid
from vmd.store.history import history_row
from vmd.store.outbox import OutboxMessage, outbox_row
from vmd.store.records import IdempotencyRecord
from vmd.store.rows import (
    IDEMPOTENCY,
    NODES,
    TASKS,
    VMS,
    Row,
    Table,
    checked,
    checked_key,
    idempotency_row,
    node_row,
    task_row,
    vm_row,
)

Key = tuple[str, ...]


class Changes:
    """Upserts and deletes of one table, keyed by primary key (last change wins)."""

    __slots__ = ("deletes", "puts", "table")

    def __init__(self, table: Table) -> None:
        self.table = table
        self.puts: dict[Key, Row] = {}
        self.deletes: set[Key] = set()

    def put(self, key: Key, row: Row) -> None:
        checked(row)  # raises RowError before the batch changes
        checked_key(key)
        self.deletes.discard(key)
        self.puts[key] = row

    def delete(self, key: Key) -> None:
        self.puts.pop(key, None)
        self.deletes.add(key)

    def __len__(self) -> int:
        return len(self.puts) + len(self.deletes)


class Batch:
    """Changes to write atomically. Not thread-safe: fill it in one thread, then hand it over."""

    __slots__ = ("_idempotency", "_nodes", "_tasks", "_vms", "history", "outbox_deletes",
                 "outbox_puts")

    def __init__(self) -> None:
        self._vms = Changes(VMS)
        self._nodes = Changes(NODES)
        self._tasks = Changes(TASKS)
        self._idempotency = Changes(IDEMPOTENCY)
        # The outbox (vmd.store.outbox) is append-only: rows to insert, id ranges to delete.
        self.outbox_puts: list[Row] = []
        self.outbox_deletes: list[tuple[int, int]] = []
        # The power history (vmd.store.history) is append-only too: one row per change.
        self.history: list[Row] = []

    def put_vm(self, vm: Vm) -> None:
        self._vms.put((vm.uuid,), vm_row(vm))

    def delete_vm(self, uuid: VmUuid) -> None:
        self._vms.delete((uuid,))

    def put_node(self, node: Node) -> None:
        self._nodes.put((node.name,), node_row(node))

    def delete_node(self, name: NodeName) -> None:
        self._nodes.delete((name,))

    def put_task(self, task: Task) -> None:
        self._tasks.put((task.task_id,), task_row(task))

    def delete_task(self, task_id: TaskId) -> None:
        self._tasks.delete((task_id,))

    def put_idempotency(self, record: IdempotencyRecord) -> None:
        self._idempotency.put((record.user, record.message_id), idempotency_row(record))

    def delete_idempotency(self, user: str, message_id: str) -> None:
        self._idempotency.delete((user, message_id))

    def put_outbox(self, message: OutboxMessage) -> None:
        """A message to publish once this batch is stored (its id must be new)."""
        self.outbox_puts.append(outbox_row(message))

    def put_history(self, c: StatusChange, recorded: float) -> None:
        """An applied status change, for its VM's power history (`recorded`: vmd's clock)."""
        row = history_row(c, recorded)
        checked_key((row[0],))  # the history's key is (vm_uuid, seq)
        self.history.append(row)

    def delete_outbox(self, first: int, last: int) -> None:
        """Outbox messages `first..last` (inclusive) were confirmed by the broker."""
        self.outbox_deletes.append((first, last))

    def changes(self) -> Iterator[Changes]:
        """Each table's changes, in a fixed order (the order does not matter: no foreign keys)."""
        yield self._vms
        yield self._nodes
        yield self._tasks
        yield self._idempotency

    def __len__(self) -> int:
        """The number of rows this batch will upsert or delete."""
        return (sum(len(c) for c in self.changes())
                + len(self.outbox_puts) + len(self.outbox_deletes) + len(self.history))
