"""The transition table: built once, shared, and the fast event equals transitions' own."""

from __future__ import annotations

import pytest
from transitions import MachineError

from vmd.fsm import MACHINE
from vmd.fsm.machine import build, table
from vmd.model import VmStatus

from .helpers import fire, make_vm

S = VmStatus
STOCK = build(stock=True)
PAIRS = [
    pytest.param(event, status, id=f"{event}-{status.value}")
    for event in MACHINE.events
    for status in VmStatus
]


@pytest.mark.parametrize(("event", "status"), PAIRS)
def test_fast_event_matches_stock_transitions(event: str, status: VmStatus) -> None:
    fast, stock = make_vm(status), make_vm(status)
    try:
        ok = MACHINE.events[event].trigger(fast)
    except MachineError as exc:
        with pytest.raises(MachineError) as stock_exc:
            STOCK.events[event].trigger(stock)
        assert str(exc) == str(stock_exc.value)
        assert fast.status is status is stock.status
    else:
        assert ok is True and STOCK.events[event].trigger(stock) is True
        assert type(fast.status) is VmStatus and fast.status is stock.status


def test_one_machine_no_models() -> None:
    assert MACHINE.models == [] and not MACHINE.auto_transitions
    assert MACHINE.model_attribute == "status"
    vm = make_vm(S.STOPPED)
    fire(vm, "start")
    assert vm.status is S.STARTING
    with pytest.raises(MachineError):
        fire(vm, "start")


@pytest.mark.parametrize(
    ("event", "source", "dest"),
    [
        pytest.param("start", S.STOPPED, S.STARTING, id="start"),
        pytest.param("stop", S.RUNNING, S.STOPPING, id="stop"),
        pytest.param("reboot", S.RUNNING, S.STOPPING, id="reboot"),
        pytest.param("freeze", S.STOPPED, S.FROZEN, id="freeze"),
        pytest.param("unfreeze", S.FROZEN, S.STOPPED, id="unfreeze"),
        pytest.param("started", S.STARTING, S.RUNNING, id="started"),
        pytest.param("rebooted", S.STOPPING, S.RUNNING, id="rebooted"),
        pytest.param("stopped", S.STOPPING, S.STOPPED, id="stopped"),
        pytest.param("frozen", S.STOPPED, S.FROZEN, id="frozen-after-observed-stop"),
        pytest.param("revert_running", S.STOPPING, S.RUNNING, id="revert"),
        pytest.param("force_running", S.FROZEN, S.RUNNING, id="force-from-frozen"),
    ],
)
def test_rows(event: str, source: VmStatus, dest: VmStatus) -> None:
    assert (event, source, dest) in table()


def test_frozen_is_never_left_by_an_observation() -> None:
    for event, source, _ in table():
        if event.startswith("observe_"):
            assert source is not S.FROZEN
    leaving_frozen = {e for e, s, d in table() if s is S.FROZEN}
    assert leaving_frozen == {"unfreeze", "vanished"} | {
        f"force_{s.value}" for s in (S.RUNNING, S.STOPPED, S.STOPPING, S.ERROR, S.NOTCREATED)}


def test_nothing_enters_a_transitional_state_but_requests_and_the_node() -> None:
    into = {e for e, _, d in table() if d in (S.STARTING, S.STOPPING)}
    assert into == {"start", "stop", "reboot", "observe_stopping", "force_stopping"}
