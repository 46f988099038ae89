"""The scheduling policy, pure: parallel VMs, one task per VM, a forced stop at once."""

from __future__ import annotations

from typing import Any, cast

import pytest

from vmd.bus import AgentTask, Delivery
from vmd.model import Action, NodeName, TaskId, VmUuid
from vmd.node_agent.scheduler import Job, Scheduler

A, B, C = (VmUuid(f"{i}" * 8 + "-0000-4000-8000-000000000000") for i in (1, 2, 3))


def job(name: str, vm: VmUuid, action: str = "stop", deadline: float = 100.0,
        **params: Any) -> Job:
    task = AgentTask(TaskId(name), vm, "h.example.com", NodeName("node1"), Action(action),
                     params, 0.0, deadline)
    return Job(task, cast(Delivery, object()))


class Recorder:
    def __init__(self, max_parallel: int = 2) -> None:
        self.launched: list[str] = []
        self.preempted: list[tuple[str, str]] = []
        self.s = Scheduler(max_parallel, launch=lambda j: self.launched.append(j.task.task_id),
                           preempt=lambda old, new: self.preempted.append(
                               (old.task.task_id, new.task.task_id)))

    def submit(self, *jobs: Job) -> None:
        for j in jobs:
            self.s.submit(j)

    def finish(self, j: Job) -> None:
        self.s.finished(j)


def test_parallel_up_to_max_then_in_arrival_order() -> None:
    r = Recorder(max_parallel=2)
    a, b, c = job("a", A), job("b", B), job("c", C)
    r.submit(a, b, c)
    assert r.launched == ["a", "b"] and r.s.waiting == 1
    r.finish(b)
    assert r.launched == ["a", "b", "c"] and r.s.waiting == 0


def test_one_task_per_vm_in_order() -> None:
    r = Recorder(max_parallel=4)
    first, second, third, other = (job("1", A), job("2", A, "start"), job("3", A),
                                   job("x", B))
    r.submit(first, second, third, other)
    assert r.launched == ["1", "x"]
    r.finish(first)
    assert r.launched == ["1", "x", "2"]
    r.finish(second)
    assert r.launched == ["1", "x", "2", "3"]


@pytest.mark.parametrize(
    ("running", "incoming", "preempts"),
    [
        pytest.param(("stop", {"force": False}), ("stop", {"force": True}), True,
                     id="graceful-stop"),
        pytest.param(("reboot", {"force": False}), ("stop", {"force": True}), True,
                     id="graceful-reboot"),
        pytest.param(("reboot", {"force": True}), ("stop", {"force": True}), False,
                     id="forced-reboot"),
        pytest.param(("stop", {"force": True}), ("stop", {"force": True}), False,
                     id="forced-stop"),
        pytest.param(("start", {}), ("stop", {"force": True}), False, id="start"),
        pytest.param(("stop", {"force": False}), ("stop", {"force": False}), False,
                     id="graceful-again"),
    ],
)
def test_a_forced_stop_preempts_only_a_graceful_stop_or_reboot(
    running: tuple[str, dict[str, bool]], incoming: tuple[str, dict[str, bool]],
    preempts: bool,
) -> None:
    r = Recorder(max_parallel=1)
    old = job("old", A, running[0], **running[1])
    new = job("new", A, incoming[0], **incoming[1])
    r.submit(old, job("busy", B))  # the only slot is taken by A's task
    r.submit(new)
    if preempts:
        assert r.launched == ["old", "new"]  # at once, beyond max_parallel
        assert r.preempted == [("old", "new")]
        r.finish(old)  # the killed one ends: the VM stays held by the forced stop
        assert r.s.find("new") is new and r.launched == ["old", "new"]
    else:
        assert r.launched == ["old"] and not r.preempted
        r.finish(old)
        assert r.launched == ["old", "busy"]


def test_forced_stop_supersedes_a_graceful_stop_that_has_not_started() -> None:
    r = Recorder(max_parallel=1)
    busy, graceful = job("busy", B), job("graceful", A, force=False)
    r.submit(busy, graceful)
    assert r.launched == ["busy"]
    r.submit(job("forced", A, force=True))
    assert r.launched == ["busy", "forced"]
    assert r.preempted == [("graceful", "forced")] and r.s.find("graceful") is None


def test_current_does_not_wait_for_the_vm() -> None:
    r = Recorder(max_parallel=4)
    r.submit(job("stop", A), job("cur", A, "current"))
    assert r.launched == ["stop", "cur"]


def test_expired_and_waiting_jobs_are_taken_out() -> None:
    r = Recorder(max_parallel=1)
    running, soon, later, next_vm = (job("run", A), job("soon", B, deadline=5),
                                     job("later", B, "start"), job("c", C, deadline=50))
    r.submit(running, soon, later, next_vm)
    assert [j.task.task_id for j in r.s.take_expired(10.0)] == ["soon"]
    assert r.s.find("later") is later and r.s.waiting == 2
    assert {j.task.task_id for j in r.s.take_waiting()} == {"later", "c"}
    assert r.s.waiting == 0 and r.launched == ["run"]
    r.finish(running)
    assert r.launched == ["run"] and not r.s.running
