"""The output of every decision: what the I/O edge must persist, publish and send.

One record type for requests, task results, deadlines and node observations, so the daemon
has one way to carry out any of them: persist `vm`/`new_vm`/`changes`/`new_task`/`ended`,
publish a `status_change` event per change and a `task.done` event per ended task, send
`new_task` to the node agent, queue `resync`, and send `reply` (if any).

Every record a decision returns is read-only for the caller: error replies are shared
constants (`Reply.wire()` copies the body), and the tasks and VMs are the world's own.

`change()` is the only place a VM's status moves: it fires the machine's event, stamps
`status_change`, bumps `seq` by one and returns the record of the change.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vmd.fsm.machine import EVENTS
from vmd.model import Cause, Reply, Task, TaskId, Vm, VmStatus, VmUuid

if TYPE_CHECKING:
    from vmd.fsm.history import HistoryQuery


@dataclass(slots=True)
class StatusChange:
    """One applied status change (protocol.md §9 `status_change` event)."""

    vm: Vm
    previous: VmStatus
    status: VmStatus
    time: float  # the new `status_change` (node's change time, or vmd's clock)
    cause: Cause
    task_id: TaskId | None
    seq: int
    # The AMQP user whose request caused it (causes `task` and `admin`), else None.
    principal: str | None = None
    # When the previous status began (the VM's `status_change` before this change).
    since: float | None = None


class Ignored(enum.StrEnum):
    """Why an input changed nothing (for logs and metrics)."""

    DROPPED = "dropped"  # a result or deadline for a task that already ended (or is unknown)
    STALE = "stale"  # an observation older than the last applied one
    FROZEN = "frozen"  # a frozen VM observed in another state than stopped: warn and count
    IN_BETWEEN = "in_between"  # a node-side state vmd ignores (ready, provisioning, ...)
    FOREIGN_NODE = "foreign_node"  # reported by a node the VM does not belong to
    UNKNOWN_VM = "unknown_vm"  # a VM vmd does not know, without a VM object to add it
    NODE_DOWN = "node_down"  # a re-sync that must wait until the node is online


@dataclass(slots=True)
class Decision:
    """Everything one decision did (in memory) and what the I/O edge must now do."""

    reply: Reply | None = None
    vm: Vm | None = None  # the VM concerned, when it changed and must be persisted
    changes: tuple[StatusChange, ...] = ()
    new_task: Task | None = None  # to persist and send to the VM's node agent
    ended: tuple[Task, ...] = ()  # tasks that ended now (state and result set)
    resync: tuple[VmUuid, ...] = ()  # VMs whose node state must be re-read
    new_vm: Vm | None = None  # a VM seen for the first time (already indexed)
    ignored: Ignored | None = None
    # A read the daemon answers from its store after the turn's write (reply is None).
    read: HistoryQuery | None = None

    @property
    def dropped(self) -> bool:
        return self.ignored is Ignored.DROPPED

    @property
    def frozen_ignored(self) -> bool:
        return self.ignored is Ignored.FROZEN


def change(
    vm: Vm, event: str, time: float, cause: Cause, task_id: TaskId | None,
    principal: str | None = None,
) -> StatusChange:
    """Apply one status change to `vm` through the machine and record it."""
    previous = vm.status
    since = vm.status_change
    EVENTS[event].trigger(vm)
    vm.status_change = time
    vm.seq += 1
    return StatusChange(vm, previous, vm.status, time, cause, task_id, vm.seq, principal, since)
