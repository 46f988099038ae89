"""Records with every field set (and with none), shared by the store tests."""

from __future__ import annotations

from vmd.model import (
    Action,
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
from vmd.store import IdempotencyRecord

NOW = 1_795_000_000.0


def uuid(i: int) -> VmUuid:
    return VmUuid(f"{i:08x}-0000-4000-8000-{i:012x}")


def full_vm(i: int = 1) -> Vm:
    """A VM with every field away from its default."""
    return Vm(
        uuid=uuid(i),
        hostname=f"vm{i}.example.com",
        alias=f"vm{i} \u00e9t\u00e9",
        owner_uuid="8a1a4e6c-0000-4000-8000-000000000001",
        node=NodeName("cn01.example.com"),
        brand="bhyve",
        ostype="windows",
        status=VmStatus.STOPPING,
        status_change=NOW - 12.345,
        observed_at=NOW - 20.5,
        active_definition={"ram": 2048, "disks": [{"size": 10240, "boot": True}], "x": None},
        pending_definition={"ram": 4096, "note": "caf\u00e9 \u2603"},
        snapshots=3,
        task_id=TaskId(f"0-{i:08x}-2600-423d-9f07"),
        seq=4711,
    )


def bare_vm(i: int = 2) -> Vm:
    """A VM with only the required fields (defaults and None elsewhere)."""
    return Vm(uuid(i), f"vm{i}.example.com", f"vm{i}", "owner-b", NodeName("cn02.example.com"))


def full_node(name: str = "cn01.example.com") -> Node:
    return Node(NodeName(name), NodeStatus.ONLINE, NOW - 1.5, frozenset({"a.iso", "b.iso"}))


def pending_task(i: int = 1) -> Task:
    return Task(
        task_id=TaskId(f"0-{i:08x}-2600-423d-9f07"),
        vm_uuid=uuid(i),
        action=Action.STOP,
        method="PUT",
        params={"force": True, "timeout": 60},
        created=NOW - 30.0,
        deadline=NOW + 180.0,
        owner_uuid="8a1a4e6c-0000-4000-8000-000000000001",
        node=NodeName("cn01.example.com"),
        previous_status=VmStatus.RUNNING,
    )


def ended_task(i: int = 2, ended: float = NOW - 5.0) -> Task:
    return Task(
        task_id=TaskId(f"0-{i:08x}-aaaa-bbbb-cccc"),
        vm_uuid=uuid(i),
        action=Action.START,
        method="PUT",
        params={},
        created=ended - 10.0,
        deadline=ended + 320.0,
        state=TaskState.FAILURE,
        result={"returncode": 1, "message": "boom", "detail": "Got bad return code (1)."},
        ended=ended,
    )


def record(message_id: str = "m1", created: float = NOW - 60.0) -> IdempotencyRecord:
    task_id = "0-a2327793-2600-423d-9f07"
    first = Reply(201, {"status": "PENDING", "result": None, "task_id": task_id})
    final = Reply(200, {"status": "SUCCESS", "result": {"returncode": 0, "message": "ok"}})
    return IdempotencyRecord("alice", message_id, (first, final), created)
