"""A task the agent was running when it was SIGKILLed is reported (outcome unknown) by the
restarted agent at once, without a redelivery: its delivery was acked when it started, so
none comes, and the daemon would otherwise wait for the task's deadline. Found by the fault
suite (tests/reliability, agent SIGKILL scenario)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from vmd.bus import FullSync, TaskResult
from vmd.model import OutcomeKind

from .conftest import AgentProcess, DaemonSide, Sim, calls, wait_calls
from .test_process import H, config_for


async def test_a_task_killed_with_the_agent_is_reported_after_the_restart(
    tmp_path: Path, amqp_url: str, daemon: DaemonSide, sim: Sim,
    agent_process: Callable[..., AgentProcess],
) -> None:
    uuid = await sim.create("kvm", "running", hostname=H)
    await sim.ctl("fault", uuid, "shutdown_seconds=100")
    agent = agent_process(config_for(tmp_path, amqp_url, sim), sim.env)
    await agent.start()
    await daemon.wait(FullSync)
    stop = await daemon.send(daemon.task(uuid, "stop", hostname=H, deadline=60, force=False,
                                         timeout=0))
    await wait_calls(sim, lambda ls: any(x.endswith("-> running") for x in ls), uuid)
    await agent.kill()
    assert not daemon.of(TaskResult)
    journal = (tmp_path / "state" / "journal-node1.jsonl").read_text().splitlines()
    assert [json.loads(x)["e"] for x in journal] == ["start"]

    mark = len(daemon.received)
    await agent.start()
    sync = await daemon.wait(FullSync, after=mark)
    # Nothing is sent again: the agent reports the orphan by itself, after its full sync.
    result = await daemon.result(stop.task_id)
    assert (result.outcome.kind, result.outcome.returncode) == (OutcomeKind.FAILURE, 255)
    assert result.outcome.message.startswith(f"vmadm stop {H}: outcome unknown")
    order = [r.report for r in daemon.received[mark:]]
    assert order.index(sync) < order.index(result)
    journal = (tmp_path / "state" / "journal-node1.jsonl").read_text().splitlines()
    assert [json.loads(x)["e"] for x in journal][-1] == "done"
    # vmadm ran once: the orphaned stop of the first agent finished on its own.
    await wait_calls(sim, lambda ls: not any("-> running" in x for x in ls), uuid)
    assert len([x for x in await calls(sim, uuid) if x.startswith("stop")]) == 1
    # Both the stop and the restarted agent's look at the VM carry the task id (REQ_ID).
    traced = [x.split()[1] for x in (await sim.ctl("calls", "--req-id", uuid)).splitlines()
              if x.startswith(f"REQ_ID={stop.task_id} ")]
    assert traced == ["stop", "get"]


async def test_a_current_task_killed_with_the_agent_is_answered_by_the_next_one(
    tmp_path: Path, amqp_url: str, daemon: DaemonSide, sim: Sim,
    agent_process: Callable[..., AgentProcess],
) -> None:
    uuid = await sim.create("kvm", "running", hostname=H)
    agent = agent_process(config_for(tmp_path, amqp_url, sim), sim.env)
    await agent.start()
    await daemon.wait(FullSync)
    # The agent's next `vmadm get` is slow (100 simulated seconds, 2 s): the task is running
    # when the agent is killed (the orphaned get ends by itself).
    await sim.ctl("fault", uuid, 'delay_next={"cmd": "get", "seconds": 100}')
    current = await daemon.send(daemon.task(uuid, "current", hostname=H, deadline=60))
    await wait_calls(sim, lambda ls: any(x.startswith("get") and x.endswith("-> running")
                                         for x in ls), uuid)
    await agent.kill()
    assert not daemon.of(TaskResult)

    await agent.start()
    result = await daemon.result(current.task_id)
    assert (result.outcome.kind, result.outcome.state) == (OutcomeKind.SUCCESS, "running")
