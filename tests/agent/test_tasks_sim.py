"""Tasks end to end: the daemon's side publishes AgentTasks on the real broker, the agent runs
the real `vmd-vmadm` simulator, the results come back on `vmd.agent.reports`."""

from __future__ import annotations

import json
import time

from vmd.bus import TaskResult, TaskUndelivered
from vmd.model import OutcomeKind

from .conftest import AgentFactory, DaemonSide, Sim, calls, sim_backend, wait_calls

H = "web01.example.com"


async def test_outcome_kinds(daemon: DaemonSide, make_agent: AgentFactory, sim: Sim) -> None:
    uuid = await sim.create("kvm", "stopped", hostname=H)
    running = await make_agent(sim_backend(sim), sim=sim)

    r = await daemon.run(uuid, "start", hostname=H)
    assert (r.outcome.kind, r.outcome.returncode) == (OutcomeKind.SUCCESS, 0)
    assert r.outcome.message == f"Successfully started VM {H}"
    assert (r.uuid, r.node, r.action.value) == (uuid, "node1", "start")

    r = await daemon.run(uuid, "start", hostname=H)
    assert r.outcome.kind is OutcomeKind.NOOP and r.outcome.returncode == 0
    assert "is already 'running'" in r.outcome.message

    before = time.time()
    r = await daemon.run(uuid, "current", hostname=H)
    assert r.outcome.kind is OutcomeKind.SUCCESS and r.outcome.state == "running"
    assert r.outcome.change_time is not None and r.outcome.change_time >= before - 1

    r = await daemon.run(uuid, "reboot", hostname=H, force=False, timeout=0)
    assert r.outcome.kind is OutcomeKind.SUCCESS
    assert r.outcome.message == f"Successfully completed reboot for VM {H}"

    r = await daemon.run(uuid, "stop", hostname=H, force=False, timeout=5)
    assert r.outcome.kind is OutcomeKind.SUCCESS
    assert r.outcome.message == f"Successfully completed stop for VM {H}"

    r = await daemon.run(uuid, "reboot", hostname=H, force=False, timeout=0)
    assert (r.outcome.kind, r.outcome.returncode) == (OutcomeKind.FAILURE, 1)

    absent = "00000000-0000-4000-8000-000000000000"
    r = await daemon.run(absent, "current", hostname="gone.example.com")
    assert r.outcome.kind is OutcomeKind.NOT_FOUND and r.outcome.state is None
    r = await daemon.run(absent, "stop", hostname="gone.example.com", force=True)
    assert r.outcome.kind is OutcomeKind.NOT_FOUND

    fail = [{"cmd": "start", "stderr": "Unable to start VM: simulated trouble", "exit": 1}]
    await sim.ctl("fault", uuid, f"fail_next={json.dumps(fail)}")
    r = await daemon.run(uuid, "start", hostname=H)
    assert (r.outcome.kind, r.outcome.returncode) == (OutcomeKind.FAILURE, 1)
    assert r.outcome.message == "Unable to start VM: simulated trouble"

    r = await daemon.run(uuid, "stop", hostname=H, timeout="soon")
    assert (r.outcome.kind, r.outcome.returncode) == (OutcomeKind.FAILURE, 2)
    assert r.outcome.message.startswith("invalid task: task parameter 'timeout'")

    assert [c.split(" -> ")[0].split()[0] for c in await calls(sim, uuid)] == [
        "start", "start", "get", "reboot", "stop", "reboot", "start"]

    def count(command: str, outcome: str) -> float | None:
        return running.agent.metrics.registry.get_sample_value(
            "vmd_vmadm_calls_total", {"command": command, "outcome": outcome})

    assert (count("start", "success"), count("start", "noop"), count("start", "failure")) == (
        1, 1, 1)
    assert (count("reboot", "success"), count("reboot", "failure")) == (1, 1)
    # `current` of the absent VM and the brand lookup of the stop are both `get`s.
    assert (count("get", "success"), count("get", "not_found")) == (1, 2)
    assert count("lookup", "success") == 1


async def test_update_around_the_power_action(
    daemon: DaemonSide, make_agent: AgentFactory, sim: Sim
) -> None:
    uuid = await sim.create("kvm", "stopped", hostname=H)
    await make_agent(sim_backend(sim), sim=sim)

    def order() -> list[str]:
        return [line.split()[0] for line in lines]

    r = await daemon.run(uuid, "start", hostname=H, update=True,
                         definition={"alias": "first"}, cdimage=None)
    assert r.outcome.kind is OutcomeKind.SUCCESS
    assert r.outcome.definition is not None and r.outcome.definition["alias"] == "first"
    lines = await calls(sim, uuid)
    assert order() == ["update", "get", "start"]

    r = await daemon.run(uuid, "reboot", hostname=H, update=True, force=False, timeout=0,
                         definition={"alias": "second"})
    assert r.outcome.kind is OutcomeKind.SUCCESS
    assert r.outcome.message == f"Successfully completed reboot for VM {H}"
    assert r.outcome.definition is not None and r.outcome.definition["alias"] == "second"
    lines = (await calls(sim, uuid))[3:]
    assert order() == ["stop", "update", "get", "start"]

    r = await daemon.run(uuid, "stop", hostname=H, update=True, force=True, timeout=0,
                         definition={"alias": "third"})
    assert r.outcome.kind is OutcomeKind.SUCCESS
    assert r.outcome.definition is not None and r.outcome.definition["alias"] == "third"
    lines = (await calls(sim, uuid))[7:]
    assert order() == ["stop", "update", "get"]

    # `update` false: the definition is not applied even if present.
    r = await daemon.run(uuid, "start", hostname=H, update=False, definition={"alias": "no"})
    assert r.outcome.kind is OutcomeKind.SUCCESS and r.outcome.definition is None

    # A failed update: the start does not run.
    await daemon.run(uuid, "stop", hostname=H, force=True)
    fail = [{"cmd": "update", "stderr": "Invalid value(s) for: ram", "exit": 1}]
    await sim.ctl("fault", uuid, f"fail_next={json.dumps(fail)}")
    n = len(await calls(sim, uuid))
    r = await daemon.run(uuid, "start", hostname=H, update=True, definition={"ram": -1})
    assert r.outcome.kind is OutcomeKind.FAILURE
    assert r.outcome.message == "Invalid value(s) for: ram" and r.outcome.definition is None
    lines = (await calls(sim, uuid))[n:]
    assert order() == ["update"]


async def test_parallel_vms_one_task_per_vm_and_deadlines(
    daemon: DaemonSide, make_agent: AgentFactory, sim: Sim
) -> None:
    a = await sim.create("kvm", "running", hostname="a.example.com")
    b = await sim.create("kvm", "running", hostname="b.example.com")
    for vm in (a, b):
        await sim.ctl("fault", vm, 'hang_next={"cmd": "stop"}')
    running = await make_agent(sim_backend(sim), sim=sim)

    # Two hung stops run at once (different VMs); the driver kills each at its deadline.
    stop_a = await daemon.send(daemon.task(a, "stop", hostname="a.example.com", deadline=3.0,
                                           force=False, timeout=0))
    stop_b = await daemon.send(daemon.task(b, "stop", hostname="b.example.com", deadline=3.0,
                                           force=False, timeout=0))
    # A start for A waits behind A's stop; a second one whose deadline comes first is
    # rejected without ever running.
    start_a = await daemon.send(daemon.task(a, "start", hostname="a.example.com",
                                            deadline=20.0))
    doomed = await daemon.send(daemon.task(a, "start", hostname="a.example.com", deadline=1.0))
    def hung(lines: list[str]) -> set[str]:
        return {x.split()[1] for x in lines if x.startswith("stop") and x.endswith("-> running")}

    both = await wait_calls(sim, lambda ls: len(hung(ls)) == 2)
    assert hung(both) == {a, b}
    assert not any(line.startswith("start") for line in both)

    undelivered = await daemon.wait(TaskUndelivered, lambda u: u.task.task_id == doomed.task_id)
    assert undelivered.reason == "rejected"
    for stop in (stop_a, stop_b):
        r = await daemon.result(stop.task_id)
        assert (r.outcome.kind, r.outcome.returncode) == (OutcomeKind.FAILURE, 124)
        assert "killed" in r.outcome.message
    r = await daemon.result(start_a.task_id)
    assert r.outcome.kind is OutcomeKind.NOOP  # the hung stop changed nothing
    lines = await calls(sim, a)
    assert [line.split()[0] for line in lines] == ["stop", "start"]
    assert lines[0].endswith("-> killed")
    assert not [r for r in daemon.of(TaskResult) if r.task_id == doomed.task_id]
    assert running.agent.metrics.registry.get_sample_value(
        "vmd_vmadm_calls_total", {"command": "stop", "outcome": "timeout"}) == 2


async def test_task_past_its_deadline_is_not_started(
    daemon: DaemonSide, make_agent: AgentFactory, sim: Sim
) -> None:
    uuid = await sim.create("kvm", "running", hostname=H)
    await make_agent(sim_backend(sim), sim=sim)
    late = daemon.task(uuid, "stop", hostname=H, deadline=-1.0, force=True)
    # The broker's TTL (computed as if sent earlier) lets it through to the agent.
    await daemon.send(late, now=late.deadline - 10)
    undelivered = await daemon.wait(TaskUndelivered, lambda u: u.task.task_id == late.task_id)
    assert undelivered.reason == "rejected"
    r = await daemon.run(uuid, "current", hostname=H)
    assert r.outcome.state == "running"
    assert not [line for line in await calls(sim, uuid) if line.startswith("stop")]


async def test_force_stop_preempts_a_graceful_stop(
    daemon: DaemonSide, make_agent: AgentFactory, sim: Sim
) -> None:
    uuid = await sim.create("kvm", "running", hostname=H)
    await sim.ctl("fault", uuid, "guest_honors_shutdown=false")
    await make_agent(sim_backend(sim), sim=sim)
    graceful = await daemon.send(daemon.task(uuid, "stop", hostname=H, deadline=600.0,
                                             force=False, timeout=1000))
    await wait_calls(sim, lambda ls: any(line.endswith("-> running") for line in ls), uuid)
    forced = await daemon.run(uuid, "stop", hostname=H, force=True, timeout=0)
    assert forced.outcome.kind is OutcomeKind.SUCCESS
    r = await daemon.result(graceful.task_id)
    assert (r.outcome.kind, r.outcome.returncode) == (OutcomeKind.FAILURE, 137)
    assert r.outcome.message == (f"vmadm stop {H} killed: preempted by the forced stop "
                                 f"{forced.task_id}")
    lines = await wait_calls(sim, lambda ls: not any("-> running" in x for x in ls), uuid)
    assert lines == [f"stop {uuid} -t 1000 -> killed", f"stop {uuid} -F -> exit 0"]
    r = await daemon.run(uuid, "current", hostname=H)
    assert r.outcome.state == "stopped"
