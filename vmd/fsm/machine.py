"""The VM status transition table: one `transitions.Machine`, built once, applied to records.

Why this module exists: every status change vmd makes (a request moving a VM to its
transitional state, a task result, a deadline, an admin freeze, a node observation) is one
named event of one table, so an illegal move is a bug that crashes loudly (`MachineError`)
instead of silently corrupting a VM. The reply codes are NOT derived from the machine: the
ordered checks of `vmd.fsm.power` decide them before an event is fired (docs/fsm.md,
The transition table).

How it is used (the FAQ recipe of transitions issue #146; docs/architecture.md rule 1): the
machine has no models (`model=None`, never `add_model`); the VMs are the slotted
`vmd.model.Vm` records and an event is fired with `MACHINE.events[name].trigger(vm)`.
`Vm.status` stays a `VmStatus`: the states are `VmStatus` members whose State name *and*
value are the member itself (a `StrEnum` hashes like its string, so transitions' string
keys still work), hence transitions writes the member back into `vm.status`.

Speed: the stock `Event.trigger` costs ~12 µs on the 2-core target machine (EventData,
a partial, ~10 logging calls and empty callback loops per fire), more than the whole
budget of one decision (100,000 decisions/s). vmd's table has no callbacks, conditions or
queue (asserted below), so `_TableEvent.trigger` keeps transitions' contract for such a
table (valid source → the destination is written to the model attribute and True is
returned; invalid source → `MachineError` with transitions' own message) in ~0.5 µs.
`tests/fsm/test_machine.py` checks it against the stock implementation for every
(event, state) pair.

Why not transitions' public API alone (`bench/fsm_transitions.py`, docs/performance.md,
"transitions through its public API"): the stock `machine.events[name].trigger(vm)` costs
~5 µs per change against 0.12 µs here, half of the 10 µs budget of a whole decision; one
shared `Machine(model=[])` with `add_model` needs unslotted records (it binds triggers on
each model), costs ~6 µs per change and ~60 s to attach 100,000 VMs at restore; attaching
per call (`add_model`/`remove_model` around a trigger) costs ~270 µs per change. So this
module keeps the minimal extension above: transitions builds and validates the table, and
`_TableEvent` applies it. The only firing path is `vmd.fsm.decision.change()`.
"""

from __future__ import annotations

from typing import Any

from transitions import Machine, MachineError, State
from transitions.core import Event

from vmd.model import VmStatus

S = VmStatus

# The statuses a node observation (or a `current` result) can report (docs/fsm.md §2).
OBSERVABLE = (S.RUNNING, S.STOPPED, S.STOPPING, S.ERROR, S.NOTCREATED)
# Where a failed or expired task may return a VM to (its status before the request).
REVERTIBLE = (S.STOPPED, S.RUNNING, S.FROZEN, S.ERROR, S.NOTCREATED)
ALL = tuple(VmStatus)


def _t(trigger: str, source: tuple[VmStatus, ...] | VmStatus, dest: VmStatus) -> dict[str, Any]:
    sources = (source,) if isinstance(source, VmStatus) else source
    # Plain strings: transitions turns an Enum source into its *name* ("STOPPED").
    return {"trigger": trigger, "source": [s.value for s in sources], "dest": dest.value}


TRANSITIONS: list[dict[str, Any]] = [
    # Requests (docs/fsm.md §3.5 step 9 and the instant admin answers of the gate).
    _t("start", S.STOPPED, S.STARTING),
    _t("stop", S.RUNNING, S.STOPPING),
    _t("reboot", S.RUNNING, S.STOPPING),
    _t("freeze", S.STOPPED, S.FROZEN),
    _t("unfreeze", S.FROZEN, S.STOPPED),
    # Task results (§3.6). `frozen` also from stopped: a stop+freeze that succeeds ends
    # frozen even when a node observation already moved the VM to stopped.
    _t("started", S.STARTING, S.RUNNING),
    _t("rebooted", S.STOPPING, S.RUNNING),
    _t("stopped", S.STOPPING, S.STOPPED),
    _t("frozen", (S.STOPPING, S.STOPPED), S.FROZEN),
    _t("vanished", tuple(s for s in ALL if s is not S.NOTCREATED), S.NOTCREATED),
    # Failure or deadline: back to the status the VM had before the request.
    *(_t(f"revert_{d.value}", (S.STARTING, S.STOPPING), d) for d in REVERTIBLE),
    # Node observations and `current` results under the rules of §5: never from frozen.
    *(
        _t(f"observe_{d.value}", tuple(s for s in ALL if s not in (S.FROZEN, d)), d)
        for d in OBSERVABLE
    ),
    # Forced re-sync (PUT .../status/current, §3.4): applied unconditionally.
    *(_t(f"force_{d.value}", tuple(s for s in ALL if s is not d), d) for d in OBSERVABLE),
]


class _StatusState(State):
    """A state whose name and value are the `VmStatus` member itself."""

    @property
    def name(self) -> Any:
        return self._name

    @property
    def value(self) -> Any:
        return self._name


class _TableEvent(Event):
    """An event of a callback-free table: transitions' contract, without its per-fire cost."""

    _dest: dict[VmStatus, VmStatus]
    _attr: str

    def freeze_table(self, machine: Machine) -> None:
        self._attr = machine.model_attribute
        self._dest = {}
        for source, transitions in self.transitions.items():
            if len(transitions) != 1:
                raise AssertionError(f"event {self.name}: one transition per source")
            tr = transitions[0]
            if tr.conditions or tr.prepare or tr.before or tr.after:
                raise AssertionError(f"event {self.name}: the table has no callbacks")
            self._dest[VmStatus(source)] = VmStatus(str(tr.dest))

    def trigger(self, model: Any, *args: Any, **kwargs: Any) -> bool:
        dest = self._dest.get(getattr(model, self._attr))
        if dest is None:
            status = getattr(model, self._attr)
            raise MachineError(f"Can't trigger event {self.name} from state {status}!")
        setattr(model, self._attr, dest)
        return True


class _StatusMachine(Machine):
    state_cls = _StatusState
    event_cls = _TableEvent

    def get_state(self, state: Any) -> State:
        # Direct lookup: the stock version converts an Enum to its *name* first.
        try:
            return self.states[state]
        except KeyError:
            raise ValueError(f"State '{state}' is not a registered state.") from None


def build(*, stock: bool = False) -> Machine:
    """The table as a machine. `stock=True` keeps transitions' own Event (tests compare)."""
    cls: type[Machine] = _StatusMachine
    if stock:
        cls = type("_StockStatusMachine", (_StatusMachine,), {"event_cls": Event})
    machine = cls(
        model=None,
        states=[_StatusState(s) for s in VmStatus],
        transitions=TRANSITIONS,
        initial=None,
        auto_transitions=False,
        ignore_invalid_triggers=False,
        model_attribute="status",
    )
    for name in (
        "before_state_change",
        "after_state_change",
        "prepare_event",
        "finalize_event",
        "on_exception",
    ):
        if getattr(machine, name):
            raise AssertionError(f"the table has no {name} callbacks")
    if not stock:
        for event in machine.events.values():
            assert isinstance(event, _TableEvent)
            event.freeze_table(machine)
    return machine


MACHINE: Machine = build()
EVENTS: dict[str, Event] = MACHINE.events


def table() -> list[tuple[str, VmStatus, VmStatus]]:
    """Every (event, source, dest) row, for docs and tests."""
    rows: list[tuple[str, VmStatus, VmStatus]] = []
    for name, event in EVENTS.items():
        for source, transitions in event.transitions.items():
            rows.append((name, VmStatus(source), VmStatus(str(transitions[0].dest))))
    return rows
