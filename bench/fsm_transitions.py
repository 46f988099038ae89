"""Benchmark: vmd's status machine through transitions' public API vs vmd's `_TableEvent`.

Issue 13 ("honest libraries"): `vmd.fsm.machine` overrides transitions' `Event.trigger`.
This measures, best of several interleaved rounds (timer `time.perf_counter`):

- µs per status change (a start/started/stop/stopped cycle, four changes per VM):
  `override` (vmd's `_TableEvent.trigger`, what `change()` uses), `stock-event` (the same
  model-less machine with transitions' own `Event`: `machine.events[name].trigger(vm)`),
  `add_model` (one shared `Machine(model=[])` with every VM added: `vm.start()`), and
  `attach-per-call` (`add_model(vm)`, trigger, `remove_model(vm)` around each change);
- the restore cost for N VMs: `add_model` of N records (the override and stock-event
  machines attach nothing, so their restore cost is zero);
- the enum-alias lever of `vmd.fsm.power`: `VmStatus.STOPPED` vs a module constant.

`add_model` needs a model it can set attributes on (bound triggers, `is_<state>`): the
slotted `vmd.model.Vm` refuses them, so those two rows use a plain `__dict__` record.

    .venv/bin/python bench/fsm_transitions.py [--n 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time
import timeit
from typing import Any

from transitions import Machine

from vmd.fsm.machine import MACHINE, TRANSITIONS, build
from vmd.model import VmStatus

CYCLE = ("start", "started", "stop", "stopped")
STOPPED = VmStatus.STOPPED


class _Rec:
    """A plain (non-slotted) record, for the add_model variants."""

    def __init__(self) -> None:
        self.status: Any = "stopped"


class _SlotRec:
    __slots__ = ("status",)

    def __init__(self) -> None:
        self.status: Any = VmStatus.STOPPED


def _public_machine() -> Machine:
    return Machine(
        model=[], states=[s.value for s in VmStatus], transitions=TRANSITIONS,
        initial="stopped", auto_transitions=False, ignore_invalid_triggers=False,
        model_attribute="status",
    )


def _per_change(fn: Any, n: int) -> float:
    t0 = time.perf_counter()
    fn(n)
    return (time.perf_counter() - t0) / (n * len(CYCLE)) * 1e6


def _events_loop(machine: Machine) -> Any:
    events = machine.events

    def run(n: int) -> None:
        vm = _SlotRec()
        for _ in range(n):
            for e in CYCLE:
                events[e].trigger(vm)
    return run


def _add_model_loop(n: int) -> None:
    machine = _public_machine()
    vm = _Rec()
    machine.add_model(vm)
    for _ in range(n):
        for e in CYCLE:
            getattr(vm, e)()


def _attach_loop(n: int) -> None:
    machine = _public_machine()
    vm = _Rec()
    for _ in range(n):
        for e in CYCLE:
            machine.add_model(vm, initial=vm.status)
            machine.events[e].trigger(vm)
            machine.remove_model(vm)


def _restore(n: int) -> float:
    machine = _public_machine()
    recs = [_Rec() for _ in range(n)]
    t0 = time.perf_counter()
    machine.add_model(recs)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    stock = build(stock=True)
    cases: dict[str, tuple[Any, int]] = {
        "override": (_events_loop(MACHINE), 20_000),
        "stock-event": (_events_loop(stock), 5_000),
        "add_model": (_add_model_loop, 5_000),
        "attach-per-call": (_attach_loop, 500),
    }
    best: dict[str, float] = {k: float("inf") for k in cases}
    restore = float("inf")
    alias = {"VmStatus.STOPPED": float("inf"), "module constant": float("inf")}
    g = {"VmStatus": VmStatus, "STOPPED": STOPPED}
    for _ in range(args.rounds):
        for name, (fn, n) in cases.items():
            best[name] = min(best[name], _per_change(fn, n))
        restore = min(restore, _restore(args.n))
        for expr, key in (("VmStatus.STOPPED", "VmStatus.STOPPED"), ("STOPPED", "module constant")):
            t = timeit.timeit(expr, globals=g, number=1_000_000) / 1e6 * 1e6
            alias[key] = min(alias[key], t)
    print(f"best of {args.rounds} interleaved rounds")
    print("µs per status change (target: a whole decision <= 10 µs, >= 100,000/s)")
    for name, us in best.items():
        print(f"  {name:16s} {us:8.2f}")
    print(f"restore: add_model of {args.n:,} records: {restore:.2f} s "
          f"(override/stock-event: 0 s, nothing attached)")
    print("enum access, µs:")
    for key, us in alias.items():
        print(f"  {key:18s} {us:.3f}")


if __name__ == "__main__":
    main()
