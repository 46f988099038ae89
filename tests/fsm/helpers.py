"""Builders for the fsm tests: a small world, VMs in every status, and request shortcuts.

Transitional statuses are reached through real decisions (a PUT start/stop), never by
writing `vm.status`, so a test row sees the same power slot and tasks the daemon would.
"""

from __future__ import annotations

import random
from typing import Any

from vmd.fsm import (
    MACHINE,
    Decision,
    FsmSettings,
    TaskBook,
    VmIndex,
    World,
    complete_task,
    decide,
    observe,
    task_id_factory,
)
from vmd.model import (
    Node,
    NodeName,
    NodeStatus,
    Observation,
    OutcomeKind,
    Principal,
    Request,
    Task,
    TaskId,
    TaskOutcome,
    Vm,
    VmStatus,
    VmUuid,
)

NODE = NodeName("node1")
NODE2 = NodeName("node2")
OWNER_A = "8a1a4e6c-0000-4000-8000-000000000001"
OWNER_B = "8a1a4e6c-0000-4000-8000-000000000002"
ADMIN = Principal("admin", admin=True)
ALICE = Principal("alice", owner_uuids=frozenset({OWNER_A}))
BOB = Principal("bob", owner_uuids=frozenset({OWNER_B}))
UUID = VmUuid("5d1a1b4e-1b7c-4b2e-9a8f-000000000001")
HOST = "web01.example.com"
ISOS = frozenset({"rescuecd.iso", "debian.iso", "virtio.iso"})
NOW = 1_800_000_000.0


def fire(vm: Vm, event: str) -> None:
    """Fire one event of the table on one record (test-only; vmd fires via `change()`)."""
    MACHINE.events[event].trigger(vm)


def make_vm(
    status: VmStatus = VmStatus.STOPPED, *, uuid: str = UUID, hostname: str = HOST,
    owner: str = OWNER_A, node: NodeName = NODE, brand: str = "kvm", **kw: Any,
) -> Vm:
    return Vm(
        uuid=VmUuid(uuid), hostname=hostname, alias=hostname.split(".")[0], owner_uuid=owner,
        node=node, brand=brand, status=status, **kw,
    )


def make_world(
    *vms: Vm, node_status: NodeStatus = NodeStatus.ONLINE, settings: FsmSettings | None = None,
) -> World:
    nodes = {
        NODE: Node(NODE, node_status, isos=ISOS),
        NODE2: Node(NODE2, NodeStatus.ONLINE, isos=frozenset()),
    }
    new_task_id = task_id_factory(0, randbits=random.Random(7).getrandbits)
    return World(VmIndex(vms), TaskBook(), nodes, settings or FsmSettings(), new_task_id)


def req(
    world: World, principal: Principal, method: str, path: str,
    data: dict[str, Any] | None = None, now: float = NOW,
) -> Decision:
    return decide(world, principal, Request(method, path, data or {}), now)


def put(
    world: World, principal: Principal, action: str, data: dict[str, Any] | None = None,
    *, ident: str = HOST, now: float = NOW,
) -> Decision:
    path = f"/vm/{ident}/status" + (f"/{action}" if action else "")
    return req(world, principal, "PUT", path, data, now)


def task_of(world: World, d: Decision) -> Task:
    assert d.new_task is not None, d.reply
    task = world.tasks.get(d.new_task.task_id)
    assert task is d.new_task
    return task


def obs(
    world: World, state: str | None, t: float, *, uuid: str = UUID, node: NodeName = NODE,
    vm: dict[str, Any] | None = None,
) -> Decision:
    return observe(world, Observation(VmUuid(uuid), node, state, t, vm), t)


def done(world: World, task_id: TaskId, kind: OutcomeKind = OutcomeKind.SUCCESS,
         rc: int = 0, message: str = "Successfully done", *, state: str | None = None,
         now: float = NOW + 10, **kw: Any) -> Decision:
    return complete_task(world, task_id, TaskOutcome(kind, rc, message, state, **kw), now)


# Every status a VM can be in for the gate table, reached the way vmd reaches it.
SETUPS = ("stopped", "starting", "running", "stopping", "frozen", "stopping_observed",
          "notcreated", "error")


def world_in(setup: str, **vm_kw: Any) -> tuple[World, Vm, Task | None]:
    """A world with one VM (web01, owner A) in `setup`, and its task in flight if any."""
    base = {
        "stopped": VmStatus.STOPPED, "starting": VmStatus.STOPPED, "running": VmStatus.RUNNING,
        "stopping": VmStatus.RUNNING, "frozen": VmStatus.FROZEN,
        "stopping_observed": VmStatus.RUNNING, "notcreated": VmStatus.NOTCREATED,
        "error": VmStatus.ERROR,
    }[setup]
    vm = make_vm(base, status_change=NOW - 100, **vm_kw)
    world = make_world(vm)
    task = None
    if setup == "starting":
        task = task_of(world, put(world, ADMIN, "start", now=NOW - 5))
    elif setup == "stopping":
        task = task_of(world, put(world, ADMIN, "stop", now=NOW - 5))
    elif setup == "stopping_observed":
        obs(world, "stopping", NOW - 5)
    assert vm.status is VmStatus(setup.removesuffix("_observed")), (setup, vm.status)
    return world, vm, task
