"""A task's own change travels in its result, not in an observation report of its own, and
consecutive results travel as one message.

Against the real broker: the in-process agent with the memory backend (whose actions emit
their change to the watch before they return, as vmadm's events stream usually does), and
the `Reporter` alone for the hold and the batching. "Nothing else was sent" is checked with
an ordered barrier, never a sleep: the reporter publishes in order, so once a later report
arrived, everything queued before it has arrived too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from support.amqp import agent_user

from vmd.bus import (
    Bus,
    BusSettings,
    FullSync,
    Heartbeat,
    ObservationReport,
    ResultBatch,
    TaskResult,
)
from vmd.model import Action, NodeName, Observation, OutcomeKind, TaskId, TaskOutcome, VmUuid
from vmd.node_agent.reporter import Reporter

from .conftest import NODE, AgentFactory, DaemonSide, memory_backend


def _sent(daemon: DaemonSide, after: int = 0) -> list[object]:
    """The messages that came, but heartbeats (transient, on their own timer; a previous
    test's agent may leave one in the queue)."""
    return [m.report for m in daemon.messages[after:] if not isinstance(m.report, Heartbeat)]


def _about(uuid: VmUuid, report: object) -> bool:
    if isinstance(report, ObservationReport):
        return any(o.uuid == uuid for o in report.observations)
    return False


async def test_a_tasks_change_comes_in_its_result_and_an_out_of_band_one_alone(
    daemon: DaemonSide, make_agent: AgentFactory
) -> None:
    mem, opened = memory_backend(vms=3, owners=1)
    await make_agent(opened)
    sync = await daemon.wait(FullSync)
    running = [o for o in sync.vms if o.state == "running" and o.vm is not None]
    vm, other = running[0], running[1]
    assert vm.vm is not None and other.vm is not None
    mark = len(daemon.messages)

    stop = await daemon.run(vm.uuid, "stop", hostname=vm.vm["hostname"])
    assert stop.outcome.kind is OutcomeKind.SUCCESS
    assert [o.state for o in stop.observations] == ["stopped"]
    assert all(o.uuid == vm.uuid and o.node == NODE for o in stop.observations)
    # The barrier: a later task's result; whatever the agent queued before it is here.
    barrier = await daemon.run(other.uuid, "stop", hostname=other.vm["hostname"])
    assert [o.state for o in barrier.observations] == ["stopped"]
    sent = _sent(daemon, mark)
    assert [type(r) for r in sent] == [TaskResult, TaskResult]

    mark = len(daemon.messages)
    mem.set_state(vm.uuid, "running")  # out of band: no task of the VM runs
    alone = await daemon.wait(ObservationReport, lambda r: _about(vm.uuid, r), after=mark)
    assert [o.state for o in alone.observations] == ["running"]


def _result(uuid: VmUuid, n: int, *carried: Observation) -> TaskResult:
    return TaskResult(TaskId(f"0-task-{n}"), uuid, NODE, Action.START,
                      TaskOutcome(OutcomeKind.SUCCESS, 0, f"started {n}"), float(n), carried)


async def test_reporter_holds_a_tasks_observations_for_its_result(
    daemon: DaemonSide, bus_settings: Callable[..., BusSettings]
) -> None:
    bus = Bus(bus_settings(agent_user(NODE), connection_name="test-reporter"))
    await bus.start()
    reporter = Reporter(bus, NodeName(NODE))
    run = asyncio.create_task(reporter.run())
    try:
        a, b = VmUuid("aaaaaaaa-0000-4000-8000-000000000001"), VmUuid(
            "aaaaaaaa-0000-4000-8000-000000000002")
        seen_a = Observation(a, NODE, "running", 1.0)
        seen_b = Observation(b, NODE, "stopped", 2.0)
        reporter.hold(a)
        reporter.observe(seen_a)  # held: a's task runs
        reporter.observe(seen_b)  # b has no task: queued at once
        assert reporter.pending == 1
        carried = reporter.take(a)
        assert carried == (seen_a,)
        done = reporter.post(_result(a, 1, *carried))
        reporter.observe(Observation(a, NODE, "stopped", 3.0))  # a's hold ended: alone
        await done
        await reporter.flush(10.0)
        await daemon.wait(ObservationReport, lambda r: any(
            o.uuid == a and o.change_time == 3.0 for o in r.observations))
        sent = _sent(daemon)
        assert [type(r) for r in sent] == [ObservationReport, TaskResult, ObservationReport]
        assert isinstance(sent[1], TaskResult) and sent[1].observations == (seen_a,)

        # A task that ended without a result (a cancel): what it held goes alone.
        mark = len(daemon.received)
        reporter.hold(b)
        reporter.observe(Observation(b, NODE, "running", 4.0))
        reporter.unhold(b)
        last = await daemon.wait(ObservationReport, lambda r: _about(b, r), after=mark)
        assert [o.change_time for o in last.observations] == [4.0]
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await bus.close(drain_timeout=1.0)


async def test_reporter_sends_consecutive_results_as_one_batch(
    daemon: DaemonSide, bus_settings: Callable[..., BusSettings]
) -> None:
    bus = Bus(bus_settings(agent_user(NODE), connection_name="test-reporter"))
    await bus.start()
    reporter = Reporter(bus, NodeName(NODE), max_batch=2)
    run = asyncio.create_task(reporter.run())
    try:
        a = VmUuid("aaaaaaaa-0000-4000-8000-000000000001")
        seen = Observation(a, NODE, "running", 1.0)
        # One loop step: two results, an observation, three results (max_batch 2).
        futures = [reporter.post(_result(a, 1, seen)), reporter.post(_result(a, 2))]
        reporter.observe(Observation(a, NODE, "stopped", 3.0))
        futures += [reporter.post(_result(a, n)) for n in (3, 4, 5)]
        await asyncio.gather(*futures)
        await daemon.wait(TaskResult, lambda r: r.task_id == "0-task-5")
        sent = _sent(daemon)
        assert [type(r) for r in sent] == [ResultBatch, ObservationReport, ResultBatch,
                                           TaskResult]
        first, second = sent[0], sent[2]
        assert isinstance(first, ResultBatch) and isinstance(second, ResultBatch)
        assert [r.task_id for r in first.results] == ["0-task-1", "0-task-2"]
        assert first.results[0].observations == (seen,)
        assert [r.task_id for r in second.results] == ["0-task-3", "0-task-4"]
        assert reporter.sent == 4
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await bus.close(drain_timeout=1.0)
