"""Reading the whole fleet back into memory after a restart, fast and compact.

vmd keeps every VM in memory (a million in the benchmark), so restore is one plain
`SELECT` per table with tuple rows, `Vm(...)` built positionally, and the strings many VMs
share (node names, owner uuids, brands, ostypes) interned through one dict so a million
VMs on a hundred nodes hold a hundred node-name strings, not a million. Statuses come
from a prebuilt dict instead of `VmStatus(...)` calls. Definitions are JSON-decoded only
where present (most VMs have none pending).

The cyclic garbage collector is paused while the records are built: every `Vm` is a
GC-tracked object, and a million allocations would otherwise trigger hundreds of
collections that find nothing to free. It is restored to its previous state afterwards.
"""

from __future__ import annotations

import gc
import json
from typing import Any

from vmd.model import Node, NodeName, Task, TaskId, Vm, VmStatus, VmUuid
from vmd.store.dialect import Connection
from vmd.store.records import Fleet, IdempotencyKey, IdempotencyRecord
from vmd.store.rows import (
    IDEMPOTENCY,
    NODES,
    TASKS,
    VMS,
    idempotency_from_row,
    node_from_row,
    task_from_row,
)

_STATUSES: dict[str, VmStatus] = {s.value: s for s in VmStatus}


def load_fleet(conn: Connection, *, live_since: float) -> Fleet:
    """Read VMs, nodes, pending tasks and idempotency keys created at or after `live_since`.

    Runs in one read transaction so the tables are seen at a single point in time.
    """
    enabled = gc.isenabled()
    gc.disable()
    conn.begin_read()
    try:
        # One pool for every repeated string; None maps to itself.
        pool: dict[Any, Any] = {None: None}
        nodes = _load_nodes(conn, pool)
        vms = _load_vms(conn, pool)
        tasks = _load_pending_tasks(conn, pool)
        keys = _load_idempotency(conn, live_since)
    finally:
        conn.rollback()
        if enabled:
            gc.enable()
    return Fleet(vms=vms, nodes=nodes, tasks=tasks, idempotency=keys)


def _load_nodes(conn: Connection, pool: dict[Any, Any]) -> dict[NodeName, Node]:
    nodes: dict[NodeName, Node] = {}
    for row in conn.execute(NODES.select_sql):
        node = node_from_row(row)
        pool[node.name] = node.name
        nodes[node.name] = node
    return nodes


def _load_vms(conn: Connection, pool: dict[Any, Any]) -> dict[VmUuid, Vm]:
    intern = pool.setdefault
    statuses = _STATUSES
    loads = json.loads
    vms: dict[VmUuid, Vm] = {}
    # Iterating the cursor (not fetchall) keeps one row tuple alive at a time, so the
    # transient tuples and strings reuse the same memory instead of growing the heap.
    for (
        uuid,
        hostname,
        alias,
        owner,
        node,
        brand,
        ostype,
        status,
        status_change,
        observed_at,
        active,
        pending,
        snapshots,
        task_id,
        seq,
    ) in conn.stream(VMS.select_sql):
        vms[uuid] = Vm(
            uuid,
            hostname,
            alias,
            intern(owner, owner),
            intern(node, node),
            intern(brand, brand),
            intern(ostype, ostype),
            statuses[status],
            status_change,
            observed_at,
            None if active is None else loads(active),
            None if pending is None else loads(pending),
            snapshots,
            task_id,
            seq,
        )
    return vms


def _load_pending_tasks(conn: Connection, pool: dict[Any, Any]) -> dict[TaskId, Task]:
    tasks: dict[TaskId, Task] = {}
    for row in conn.execute(f"{TASKS.select_sql} WHERE state = 'PENDING'"):
        task = task_from_row(row)
        task.owner_uuid = pool.setdefault(task.owner_uuid, task.owner_uuid)
        task.node = pool.setdefault(task.node, task.node)
        tasks[task.task_id] = task
    return tasks


def _load_idempotency(
    conn: Connection, live_since: float
) -> dict[IdempotencyKey, IdempotencyRecord]:
    keys: dict[IdempotencyKey, IdempotencyRecord] = {}
    for row in conn.execute(f"{IDEMPOTENCY.select_sql} WHERE created >= ?", (live_since,)):
        record = idempotency_from_row(row)
        keys[(record.user, record.message_id)] = record
    return keys
