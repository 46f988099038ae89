"""What a decision reads: the in-memory VM index, the task book, nodes and settings.

These are plain data structures (no I/O) owned by the daemon and handed to every decision
as one `World`. The decision functions update them in place (a VM's status, a task ended,
a new task or VM recorded) and return a `Decision` that lists everything the I/O edge
must persist, publish and send; the daemon never has to replay a decision onto them.

Indexes are kept small on purpose (the benchmark restores a million VMs): a VM is one
`Vm` record referenced from `by_uuid`, `by_hostname` (or, for a hostname two VMs share,
`shared_hostnames`), and one uuid entry per node and per owner (for full syncs and owners'
lists).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass

from vmd.model import (
    TRANSITIONAL,
    Action,
    JsonObject,
    Node,
    NodeName,
    Task,
    TaskId,
    TaskState,
    Vm,
    VmStatus,
    VmUuid,
)


@dataclass(frozen=True, slots=True)
class FsmSettings:
    """The settings the decision procedure needs (from `[daemon]`, see vmd.config)."""

    shard: int = 0
    # uuids or hostnames of internal VMs that must not be stopped (§3.5 step 7).
    no_shutdown: frozenset[str] = frozenset()
    start_deadline: float = 330.0
    stop_grace: float = 150.0
    current_deadline: float = 30.0
    stop_timeout: int = 180
    stop_timeout_windows: int = 300


class VmIndex:
    """Every VM vmd knows, by uuid, hostname, node and owner.

    A hostname is meant to name one VM, but nothing on a node enforces it: two VMs (of one
    owner or of two) may share one. `by_hostname` holds the hostnames exactly one VM has
    (the common case, one dict entry per VM); `shared_hostnames` the others, each with the
    VMs that share it, so a lookup sees all of them (vmd.fsm.lookup: each principal among
    those it may see). A VM renamed or gone leaves the others with its old hostname where
    they were (a hostname left with one VM moves back to `by_hostname`).
    """

    __slots__ = ("_by_node", "_by_owner", "by_hostname", "by_uuid", "shared_hostnames")

    def __init__(self, vms: Iterable[Vm] = ()) -> None:
        self.by_uuid: dict[str, Vm] = {}
        self.by_hostname: dict[str, Vm] = {}
        self.shared_hostnames: dict[str, dict[VmUuid, Vm]] = {}
        self._by_node: dict[NodeName, set[VmUuid]] = {}
        self._by_owner: dict[str, set[VmUuid]] = {}
        for vm in vms:
            self.add(vm)

    def __len__(self) -> int:
        return len(self.by_uuid)

    def __iter__(self) -> Iterator[Vm]:
        return iter(self.by_uuid.values())

    def get(self, uuid: str) -> Vm | None:
        return self.by_uuid.get(uuid)

    def add(self, vm: Vm) -> None:
        old = self.by_uuid.get(vm.uuid)
        if old is not None:
            self._unlink(old)
        self.by_uuid[vm.uuid] = vm
        self._link_hostname(vm)
        self._by_node.setdefault(vm.node, set()).add(vm.uuid)
        self._by_owner.setdefault(vm.owner_uuid, set()).add(vm.uuid)

    def _link_hostname(self, vm: Vm) -> None:
        hostname = vm.hostname
        group = self.shared_hostnames.get(hostname)
        if group is not None:
            group[vm.uuid] = vm
            return
        other = self.by_hostname.get(hostname)
        if other is None or other is vm:
            self.by_hostname[hostname] = vm
            return
        del self.by_hostname[hostname]
        self.shared_hostnames[hostname] = {other.uuid: other, vm.uuid: vm}

    def _unlink_hostname(self, vm: Vm) -> None:
        hostname = vm.hostname
        if self.by_hostname.get(hostname) is vm:
            del self.by_hostname[hostname]
            return
        group = self.shared_hostnames.get(hostname)
        if group is None or group.get(vm.uuid) is not vm:
            return
        del group[vm.uuid]
        if len(group) == 1:
            (last,) = group.values()
            del self.shared_hostnames[hostname]
            self.by_hostname[hostname] = last

    def _unlink(self, vm: Vm) -> None:
        self._unlink_hostname(vm)
        self._by_node.get(vm.node, set()).discard(vm.uuid)
        self._by_owner.get(vm.owner_uuid, set()).discard(vm.uuid)

    def update(
        self, vm: Vm, *, hostname: str | None = None, node: NodeName | None = None,
        owner_uuid: str | None = None,
    ) -> None:
        """Change the indexed fields of a VM already in the index."""
        self._unlink(vm)
        if hostname is not None:
            vm.hostname = hostname
        if node is not None:
            vm.node = node
        if owner_uuid is not None:
            vm.owner_uuid = owner_uuid
        self.add(vm)

    def on_node(self, node: NodeName) -> frozenset[VmUuid]:
        return frozenset(self._by_node.get(node, ()))

    def named(self, hostname: str) -> tuple[Vm, ...]:
        """Every VM with this hostname (usually one, or none)."""
        vm = self.by_hostname.get(hostname)
        if vm is not None:
            return (vm,)
        group = self.shared_hostnames.get(hostname)
        return () if group is None else tuple(group.values())

    def owned_count(self, owner_uuids: Iterable[str]) -> int:
        """How many VMs these owners have."""
        by_owner = self._by_owner
        return sum(len(by_owner.get(owner, ())) for owner in owner_uuids)

    def owned_by(self, owner_uuids: Iterable[str]) -> Iterator[Vm]:
        for owner in owner_uuids:
            for uuid in self._by_owner.get(owner, ()):
                yield self.by_uuid[uuid]


class TaskBook:
    """Tasks by id, and each VM's pending tasks (for `tasks` in status answers).

    Ended tasks stay readable by id until `forget` drops them (the daemon keeps them for a
    while and otherwise answers `GET /task/<id>/status` from its store, see
    `vmd.fsm.requests.task_status`).
    """

    __slots__ = ("_by_id", "_pending")

    def __init__(self, tasks: Iterable[Task] = ()) -> None:
        self._by_id: dict[str, Task] = {}
        self._pending: dict[VmUuid, dict[TaskId, Task]] = {}
        for task in tasks:
            self.add(task)

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, task_id: str) -> Task | None:
        return self._by_id.get(task_id)

    def add(self, task: Task) -> None:
        self._by_id[task.task_id] = task
        if not task.done:
            pending = self._pending.get(task.vm_uuid)
            if pending is None:
                self._pending[task.vm_uuid] = {task.task_id: task}
            else:
                pending[task.task_id] = task

    def add_pending(self, task: Task) -> None:
        """`add` for a task just created (the hot path of a task-creating decision)."""
        task_id = task.task_id
        self._by_id[task_id] = task
        pending = self._pending.get(task.vm_uuid)
        if pending is None:
            self._pending[task.vm_uuid] = {task_id: task}
        else:
            pending[task_id] = task

    def end(self, task: Task, state: TaskState, result: JsonObject, now: float) -> None:
        """End a pending task (exactly once: callers check `task.done` first)."""
        task.state = state
        task.result = result
        task.ended = now
        self.ended(task)

    def ended(self, task: Task) -> None:
        """Take an ended task off its VM's pending list (it stays readable by id)."""
        pending = self._pending.get(task.vm_uuid)
        if pending is not None:
            pending.pop(task.task_id, None)
            if not pending:
                del self._pending[task.vm_uuid]

    def pending_of(self, vm_uuid: VmUuid) -> Collection[Task]:
        pending = self._pending.get(vm_uuid)
        return () if pending is None else pending.values()

    def pending_copy(self) -> dict[VmUuid, tuple[Task, ...]]:
        """Every VM's pending tasks, copied (a list's snapshot, vmd.fsm.listing)."""
        return {uuid: tuple(tasks.values()) for uuid, tasks in self._pending.items()}

    def pending(self) -> Iterator[Task]:
        """Every pending task (to re-arm deadlines after a restart)."""
        for tasks in self._pending.values():
            yield from tasks.values()

    def forget(self, task_ids: Iterable[TaskId]) -> None:
        """Drop ended tasks from memory (they live on in the store)."""
        for task_id in task_ids:
            task = self._by_id.get(task_id)
            if task is not None and task.done:
                del self._by_id[task_id]


# The status a task holds its VM in while it is in flight (docs/fsm.md §2). A forced
# `current` (PUT) that superseded a power task holds the VM in that task's transitional
# status; it records it in its params under "holds".
_HOLDS = {Action.START: VmStatus.STARTING, Action.STOP: VmStatus.STOPPING,
          Action.REBOOT: VmStatus.STOPPING}


def holds(task: Task) -> VmStatus | None:
    """The transitional status `task` put (or holds) its VM in, None when it does not."""
    status = _HOLDS.get(task.action)
    if status is not None:
        return status
    held = task.params.get("holds")
    return VmStatus(held) if held in TRANSITIONAL else None


@dataclass(slots=True)
class World:
    """Everything a decision reads besides the request: handed over explicitly."""

    vms: VmIndex
    tasks: TaskBook
    nodes: Mapping[NodeName, Node]
    settings: FsmSettings
    new_task_id: Callable[[], TaskId]
