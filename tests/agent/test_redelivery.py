"""A task delivered twice is run once: while it runs, after it ended; and what a shutdown
does with a vmadm that outlives the drain deadline."""

from __future__ import annotations

from vmd.bus import TaskResult
from vmd.model import OutcomeKind

from .conftest import AgentFactory, DaemonSide, Sim, calls, sim_backend, wait_calls

H = "web01.example.com"


async def test_a_repeated_task_runs_once_and_gets_the_same_answer(
    daemon: DaemonSide, make_agent: AgentFactory, sim: Sim
) -> None:
    uuid = await sim.create("kvm", "running", hostname=H)
    await sim.ctl("fault", uuid, "shutdown_seconds=50")  # 1 s at this timescale
    running = await make_agent(sim_backend(sim), sim=sim)
    stop = await daemon.send(daemon.task(uuid, "stop", hostname=H, force=False, timeout=0))
    await wait_calls(sim, lambda ls: any(x.endswith("-> running") for x in ls), uuid)
    await daemon.send(stop)  # while it runs: acked, not run, no second result
    first = await daemon.result(stop.task_id)
    assert first.outcome.kind is OutcomeKind.SUCCESS
    mark = len(daemon.received)
    await daemon.send(stop)  # after it ended: the recorded outcome again
    again = await daemon.wait(TaskResult, lambda r: r.task_id == stop.task_id, after=mark)
    assert again.outcome == first.outcome
    assert len([r for r in daemon.of(TaskResult) if r.task_id == stop.task_id]) == 2
    assert await calls(sim, uuid) == [f"stop {uuid} -> exit 0"]
    assert running.agent.runner.repeats == 1


async def test_a_vmadm_outliving_the_drain_is_killed_and_reported(
    daemon: DaemonSide, make_agent: AgentFactory, sim: Sim
) -> None:
    uuid = await sim.create("kvm", "running", hostname=H)
    await sim.ctl("fault", uuid, 'hang_next={"cmd": "stop"}')
    running = await make_agent(sim_backend(sim), sim=sim, drain_timeout=0.5)
    stop = await daemon.send(daemon.task(uuid, "stop", hostname=H, force=False, timeout=0))
    await wait_calls(sim, lambda ls: any(x.endswith("-> running") for x in ls), uuid)
    assert await running.stop() == 0
    result = await daemon.result(stop.task_id, timeout=1)
    assert (result.outcome.kind, result.outcome.returncode) == (OutcomeKind.FAILURE, 137)
    assert result.outcome.message.startswith(
        "vmd agent shutting down: vmadm stop interrupted after ")
    assert await calls(sim, uuid) == [f"stop {uuid} -> killed"]
