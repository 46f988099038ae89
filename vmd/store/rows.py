"""Conversion between the model's records and table rows, and the SQL that moves them.

Encoding happens when a record is added to a `Batch` (in the caller's thread), so a row is
a tuple of immutable values: the writer thread never reads a `Vm` that the event loop may
be mutating. JSON columns hold compact JSON text; `None` is SQL NULL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vmd.model import (
    Action,
    JsonObject,
    Node,
    NodeName,
    NodeStatus,
    Reply,
    Task,
    TaskId,
    TaskState,
    Vm,
    VmStatus,
    VmUuid,
)
from vmd.store.records import IdempotencyRecord, RowError

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Table:
    """One table: its columns, its key, and the statements a batch runs on it."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]

    @property
    def select_sql(self) -> str:
        return f"SELECT {_names(self.columns)} FROM {self.name}"

    @property
    def get_sql(self) -> str:
        return f"{self.select_sql} WHERE {_where(self.key)}"

    @property
    def delete_sql(self) -> str:
        return f"DELETE FROM {self.name} WHERE {_where(self.key)}"

    @property
    def upsert_sql(self) -> str:
        # ON CONFLICT DO UPDATE keeps the rowid (INSERT OR REPLACE would delete and
        # re-insert, touching every index twice).
        updates = ", ".join(f"{_q(c)} = excluded.{_q(c)}"
                            for c in self.columns if c not in self.key)
        return (
            f"INSERT INTO {self.name} ({_names(self.columns)}) "
            f"VALUES ({', '.join('?' * len(self.columns))}) "
            f"ON CONFLICT ({_names(self.key)}) DO UPDATE SET {updates}"
        )


# `user` is a reserved word in PostgreSQL (SQLite takes it either way): quoted in SQL.
_RESERVED = frozenset({"user"})


def _q(column: str) -> str:
    return f'"{column}"' if column in _RESERVED else column


def _names(columns: Sequence[str]) -> str:
    return ", ".join(_q(c) for c in columns)


def _where(key: Sequence[str]) -> str:
    return " AND ".join(f"{_q(c)} = ?" for c in key)


VMS = Table(
    "vms",
    (
        "uuid",
        "hostname",
        "alias",
        "owner_uuid",
        "node",
        "brand",
        "ostype",
        "status",
        "status_change",
        "observed_at",
        "active_definition",
        "pending_definition",
        "snapshots",
        "task_id",
        "seq",
    ),
    ("uuid",),
)
NODES = Table("nodes", ("name", "status", "last_heartbeat", "isos"), ("name",))
TASKS = Table(
    "tasks",
    (
        "task_id",
        "vm_uuid",
        "action",
        "method",
        "params",
        "created",
        "deadline",
        "owner_uuid",
        "node",
        "state",
        "result",
        "ended",
        "previous_status",
        "principal",
    ),
    ("task_id",),
)
IDEMPOTENCY = Table(
    "idempotency", ("user", "message_id", "replies", "created"), ("user", "message_id")
)
# A VM's power history (vmd.store.history): written with the change, never updated.
HISTORY = Table(
    "history",
    ("vm_uuid", "seq", "status", "previous", "status_change", "cause", "task_id", "principal",
     "recorded"),
    ("vm_uuid", "seq"),
)


# allow_nan=False: NaN is not JSON and another reader of the file would choke on it.
# One encoder for every row: json.dumps with arguments builds a new JSONEncoder per call
# (~40 % of the cost of encoding a small task or reply on the daemon's hot path).
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def dumps(value: object) -> str:
    try:
        return _ENCODE(value)
    except (ValueError, TypeError, RecursionError) as exc:
        raise RowError(f"not JSON-encodable ({type(exc).__name__}: {exc})"[:200]) from None


_INT64 = range(-(1 << 63), 1 << 63)  # `in` is a comparison, not a scan


def checked(row: Row) -> Row:
    """`row` if both backends can store every value, else `RowError` (the batch stays as
    it was). Cheap: an ASCII string (nearly all) is one flag test and one scan for NUL,
    not an encode. NUL is refused on SQLite too: PostgreSQL's text cannot hold it, and a
    record must not be valid on one backend and fail a whole turn on the other."""
    for value in row:
        kind = type(value)
        if kind is str:
            if "\x00" in value:
                raise RowError("a string holds a NUL character (U+0000)")
            if not value.isascii():
                try:
                    value.encode()
                except UnicodeEncodeError:
                    raise RowError("a string is not UTF-8 (a lone surrogate)") from None
        elif kind is int:
            if value not in _INT64:
                raise RowError("an integer is beyond 64 bits")
        elif kind is float and value != value:
            raise RowError("a number is NaN")
    return row


# The largest primary key (the UTF-8 bytes of its strings together) a record may have.
# PostgreSQL's btree refuses an index entry over 2704 bytes ("index row size exceeds btree
# version 4 maximum"), failing the whole turn's write, where SQLite stores any length: a
# VM uuid is whatever an agent's report says (36 characters from vmadm; a buggy or hostile
# agent may send kilobytes), so the bound is checked when the record is added, on both
# backends. 1024 leaves room for the entry's header and is far over every real key (a
# uuid, a node name, a task id, an AMQP user and message_id of at most 255 bytes each).
MAX_KEY_BYTES = 1024


def checked_key(key: tuple[str, ...]) -> None:
    """`RowError` if the primary key `key` is longer than `MAX_KEY_BYTES` (a cheap sum of
    lengths first: a character is at most 4 bytes in UTF-8)."""
    if sum(len(part) for part in key) * 4 <= MAX_KEY_BYTES:
        return
    size = sum(len(part.encode(errors="surrogatepass")) for part in key)
    if size > MAX_KEY_BYTES:
        raise RowError(f"a key of {size} bytes is over the store's {MAX_KEY_BYTES}")


def _dumps_opt(value: object | None) -> str | None:
    return None if value is None else dumps(value)


def _loads_opt(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def vm_row(vm: Vm) -> Row:
    return (
        vm.uuid,
        vm.hostname,
        vm.alias,
        vm.owner_uuid,
        vm.node,
        vm.brand,
        vm.ostype,
        VmStatus(vm.status).value,
        vm.status_change,
        vm.observed_at,
        _dumps_opt(vm.active_definition),
        _dumps_opt(vm.pending_definition),
        vm.snapshots,
        vm.task_id,
        vm.seq,
    )


def vm_from_row(row: Row) -> Vm:
    uuid, hostname, alias, owner, node, brand, ostype, status, sc, oa, ad, pd, snaps, tid, seq = row
    return Vm(
        VmUuid(uuid),
        hostname,
        alias,
        owner,
        NodeName(node),
        brand,
        ostype,
        VmStatus(status),
        sc,
        oa,
        _loads_opt(ad),
        _loads_opt(pd),
        snaps,
        tid,
        seq,
    )


def node_row(node: Node) -> Row:
    return (node.name, NodeStatus(node.status).value, node.last_heartbeat, dumps(sorted(node.isos)))


def node_from_row(row: Row) -> Node:
    name, status, heartbeat, isos = row
    return Node(NodeName(name), NodeStatus(status), heartbeat, frozenset(json.loads(isos)))


def task_row(task: Task) -> Row:
    previous = None if task.previous_status is None else VmStatus(task.previous_status).value
    return (
        task.task_id,
        task.vm_uuid,
        Action(task.action).value,
        task.method,
        dumps(task.params),
        task.created,
        task.deadline,
        task.owner_uuid,
        task.node,
        TaskState(task.state).value,
        _dumps_opt(task.result),
        task.ended,
        previous,
        task.principal,
    )


def task_from_row(row: Row) -> Task:
    (tid, vm, action, method, params, created, deadline, owner, node, state, result, end, prev,
     principal) = row
    return Task(
        TaskId(tid),
        VmUuid(vm),
        Action(action),
        method,
        json.loads(params),
        created,
        deadline,
        owner,
        NodeName(node),
        TaskState(state),
        _loads_opt(result),
        end,
        None if prev is None else VmStatus(prev),
        principal,
    )


def idempotency_row(record: IdempotencyRecord) -> Row:
    replies = [{"code": r.code, "body": r.body} for r in record.replies]
    return (record.user, record.message_id, dumps(replies), record.created)


def idempotency_from_row(row: Row) -> IdempotencyRecord:
    user, message_id, replies, created = row
    decoded: list[JsonObject] = json.loads(replies)
    return IdempotencyRecord(
        user, message_id, tuple(Reply(r["code"], r["body"]) for r in decoded), created
    )
