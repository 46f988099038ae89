"""Transition metrics: how long VMs spend in `starting`/`stopping`, and the oldest one there.

`vmd_transition_duration_seconds{action, outcome}` observes, for every change that takes a
VM out of a transitional status, the time since it entered it (vmd's clock at both ends;
for a VM restored already starting or stopping, its `status_change`). `action` is the
in-flight power task's when the change is a task's (start, stop, reboot), else what the
status implies (`starting`: start, `stopping`: stop). `outcome` is `success` when the VM
reached that action's target (running after a start or reboot, stopped or frozen after a
stop), else `failure` (reverted, error, vanished, or crashed on the way). A reboot's halt
(`stopping -> stopped` while the reboot is in flight) is a step, not an end.

`vmd_transitional_oldest_seconds` is the age of the oldest VM now in a transitional status.
It is kept without scanning the fleet: `Transitional` holds the VMs in starting/stopping in
the order they entered (a dict, insertion-ordered; a VM that enters again moves to the
end), so the oldest is the first entry, and the housekeeping tick sets the gauge from it
(O(1) per tick, whatever the fleet size). At start-up it is seeded from the restored VMs
(one pass, before serving).
"""

from __future__ import annotations

from collections.abc import Iterable

from vmd.fsm import StatusChange, TaskBook
from vmd.model import TRANSITIONAL, Action, Vm, VmStatus, VmUuid
from vmd.obs.metrics import DaemonMetrics

S = VmStatus
_IMPLIED = {S.STARTING: Action.START, S.STOPPING: Action.STOP}
_TARGETS = {
    Action.START: frozenset({S.RUNNING}),
    Action.REBOOT: frozenset({S.RUNNING}),
    Action.STOP: frozenset({S.STOPPED, S.FROZEN}),
}


class Transitional:
    """The VMs in a transitional status, oldest first, and the metrics of their ends."""

    __slots__ = ("_metrics", "_since", "_tasks")

    def __init__(self, metrics: DaemonMetrics, tasks: TaskBook) -> None:
        self._metrics = metrics
        self._tasks = tasks
        self._since: dict[VmUuid, float] = {}

    def seed(self, vms: Iterable[Vm], now: float) -> None:
        """After restoring the fleet: every VM already starting or stopping."""
        found = [(vm.status_change if vm.status_change is not None else now, vm.uuid)
                 for vm in vms if vm.status in TRANSITIONAL]
        for since, uuid in sorted(found):
            self._since[uuid] = since

    def __len__(self) -> int:
        return len(self._since)

    def changed(self, c: StatusChange, now: float) -> None:
        """One applied change (the decision step, for every change of every decision)."""
        uuid = c.vm.uuid
        since = self._since
        if c.status in TRANSITIONAL:
            if c.previous not in TRANSITIONAL or uuid not in since:
                since.pop(uuid, None)  # entered (again): to the end of the order
                since[uuid] = now
            return
        entered = since.get(uuid)
        if entered is None:
            return
        task = self._tasks.get(c.task_id) if c.task_id is not None else None
        # Out of the order only a reboot's halt leaves a VM here (stopped, still entered).
        action = task.action if task is not None else _IMPLIED.get(c.previous, Action.REBOOT)
        if (action is Action.REBOOT and c.status is S.STOPPED and task is not None
                and not task.done):
            return  # a reboot's halt: the boot is still to come
        del since[uuid]
        outcome = "success" if c.status in _TARGETS.get(action, ()) else "failure"
        self._metrics.transition(action.value, outcome, max(0.0, now - entered))

    def oldest(self, now: float) -> float:
        """Seconds the oldest VM in starting/stopping has been there (0 when none)."""
        for since in self._since.values():
            return max(0.0, now - since)
        return 0.0

    def export(self, now: float) -> None:
        self._metrics.transitional_oldest.set(self.oldest(now))
