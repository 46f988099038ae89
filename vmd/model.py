"""Small typed records shared by every layer of vmd.

This module is the vocabulary of the project: statuses, principals, VM and task records,
requests and replies. It holds data only (no I/O, no behaviour beyond trivial helpers), so
that the pure core (`vmd.fsm`), the store, the bus and the processes can all speak it
without importing each other.

`Vm` is deliberately a small slotted record, not an object with a state machine of its own:
vmd keeps one per VM in memory (a million of them in the benchmark), and the `transitions`
machine in `vmd.fsm` is built once as a table and applied to these records.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, NewType

VmUuid = NewType("VmUuid", str)
TaskId = NewType("TaskId", str)
NodeName = NewType("NodeName", str)

JsonObject = dict[str, Any]


class VmStatus(enum.StrEnum):
    """docs/fsm.md §2: the only status strings the API ever shows."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    FROZEN = "frozen"
    NOTCREATED = "notcreated"
    ERROR = "error"


TRANSITIONAL = frozenset({VmStatus.STARTING, VmStatus.STOPPING})
NOT_OPERATIONAL = frozenset({VmStatus.NOTCREATED, VmStatus.ERROR})


class NodeStatus(enum.StrEnum):
    """docs/fsm.md §1: a node is operational only when online."""

    ONLINE = "online"
    UNREACHABLE = "unreachable"
    MAINTENANCE = "maintenance"


class TaskState(enum.StrEnum):
    """A task ends exactly once: SUCCESS, FAILURE or REVOKED."""

    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    REVOKED = "REVOKED"


class Action(enum.StrEnum):
    """Work a node agent can be asked to do for a VM."""

    START = "start"
    STOP = "stop"
    REBOOT = "reboot"
    CURRENT = "current"


class Cause(enum.StrEnum):
    """protocol.md §9: why a status changed."""

    TASK = "task"
    NODE = "node"
    ADMIN = "admin"
    SYNC = "sync"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who sent a request: an admin, or the owner of some owner_uuids."""

    name: str
    admin: bool = False
    owner_uuids: frozenset[str] = frozenset()

    def may_see(self, owner_uuid: str) -> bool:
        """The one visibility rule (vmd.fsm.lookup, vmd.fsm.requests): admin, or an owner."""
        return self.admin or owner_uuid in self.owner_uuids


@dataclass(slots=True)
class Vm:
    """One VM as vmd knows it. Mutated only by its owner, the daemon's synchronous decision
    step (docs/daemon.md).

    Times are POSIX seconds (float); the API renders them as ISO-8601 with `Z`.
    """

    uuid: VmUuid
    hostname: str
    alias: str
    owner_uuid: str
    node: NodeName
    brand: str = "kvm"
    ostype: str | None = None
    status: VmStatus = VmStatus.STOPPED
    # When the status last changed (node's change time or vmd's clock); None = never.
    status_change: float | None = None
    # Node change time of the last applied node observation (docs/fsm.md §5).
    observed_at: float | None = None
    # docs/fsm.md §6: what the node has, and the staged change (vmadm update properties).
    active_definition: JsonObject | None = None
    pending_definition: JsonObject | None = None
    snapshots: int = 0
    # The power task in flight (start/stop/reboot/forced current), at most one.
    task_id: TaskId | None = None
    # Sequence number of the last published status_change event of this VM.
    seq: int = 0

    @property
    def is_windows(self) -> bool:
        return (self.ostype or "").lower() == "windows"

    @property
    def is_hvm(self) -> bool:
        return self.brand in ("kvm", "bhyve")


@dataclass(slots=True)
class Task:
    """One unit of work sent to a node agent (docs/fsm.md §1, §3.6, §7)."""

    task_id: TaskId
    vm_uuid: VmUuid
    action: Action
    method: str  # "PUT" or "GET", shown in the status list's `tasks`
    params: JsonObject
    created: float
    deadline: float
    owner_uuid: str = ""
    node: NodeName = NodeName("")
    state: TaskState = TaskState.PENDING
    result: JsonObject | None = None
    ended: float | None = None
    # The VM's status before the task moved it to a transitional state, to return to on
    # failure or expiry (docs/fsm.md §3.6). None for tasks that do not move the VM.
    previous_status: VmStatus | None = None
    # The AMQP user whose request created the task (None for vmd's own re-syncs): the
    # `principal` of the status changes the task causes (protocol.md §9).
    principal: str | None = None

    @property
    def done(self) -> bool:
        return self.state is not TaskState.PENDING


@dataclass(slots=True)
class Node:
    """A compute node and what its agent last told vmd."""

    name: NodeName
    status: NodeStatus = NodeStatus.UNREACHABLE
    last_heartbeat: float | None = None
    isos: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed command (protocol.md §2): method, path and data."""

    method: str
    path: str
    data: JsonObject = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer: the HTTP-like code and the upstream API's JSON body (without `code`)."""

    code: int
    body: JsonObject

    def wire(self) -> JsonObject:
        """The body as sent on the bus: the upstream body plus `code`."""
        return {"code": self.code, **self.body}


class OutcomeKind(enum.StrEnum):
    """How a node agent classified a finished vmadm action (docs/fsm.md §3.6)."""

    SUCCESS = "success"  # exit 0 and the last stderr line begins with "Successfully"
    NOOP = "noop"  # exit 0 but another message, e.g. "... is already 'running'"
    NOT_FOUND = "not_found"  # "No such zone configured" / "VM <uuid> not found" / 404
    FAILURE = "failure"  # anything else


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """What a node agent reports when it finished running a task's vmadm command(s).

    `message` is vmadm's message with the VM's uuid already replaced by its hostname.
    For a `current` task, `state` is the node-side state string (`running`, `stopped`,
    `installed`, `stopping`, `failed`, ...) or None when the VM is absent on the node, and
    `change_time` the node's time of the VM's last state change when known (it lets vmd
    drop a result older than an observation it already applied, docs/fsm.md §5).
    `definition` is the VM object re-read from the node after a successful `vmadm update`
    (docs/fsm.md §6), None when no update ran or it failed.
    """

    kind: OutcomeKind
    returncode: int
    message: str
    state: str | None = None
    change_time: float | None = None
    definition: JsonObject | None = None


@dataclass(frozen=True, slots=True)
class Observation:
    """A VM's state as seen on its node, with the node's change time (docs/fsm.md §5).

    `state` is the node-side state string, or None when the VM is absent from the node.
    `vm` is the node's VM object (hostname, alias, brand, owner_uuid, ...) when known: it
    lets vmd add a VM it sees for the first time.
    """

    uuid: VmUuid
    node: NodeName
    state: str | None
    change_time: float
    vm: JsonObject | None = None
