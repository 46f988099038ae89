"""A result that carries its task's own change (issue 13, "Fewer messages per command"), and
results batched in one message, on the daemon's parts without the broker.

The public protocol must not see the difference: the status_change events (their seq, cause
`task`, task_id, time) and the task's end are what an observation report followed by the
result gives, the way an agent of the version before reports (and still may: a rolling
upgrade). A batch is one delivery, decided in one step (one turn) and acked once.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.fastdaemon import FastDaemon

from vmd.bus import AgentTask, ObservationReport, ResultBatch, TaskResult
from vmd.model import NodeName, Observation, TaskState, VmStatus

NODE1 = NodeName("node1")


async def _start(fast: FastDaemon, hostname: str) -> tuple[AgentTask, Observation]:
    """Start `hostname`; the task sent to the agent and the node's observation of it."""
    assert (await fast.call("alice", "PUT", f"/vm/{hostname}/status/start")).code == 201
    task = fast.tasks()[-1]
    vm = fast.fleet[hostname]
    vm.state = "running"
    return task, Observation(vm.uuid, NODE1, "running", fast.clock(), vm.obj())


def _events(fast: FastDaemon, hostname: str) -> list[tuple[Any, ...]]:
    uuid = fast.vm(hostname).uuid
    return [(e["seq"], e["previous"], e["status"], e["cause"], e["task_id"], e["status_change"])
            for e in fast.bus.status_changes(uuid)]


def _carrying(result: TaskResult, *observations: Observation) -> TaskResult:
    return TaskResult(result.task_id, result.uuid, result.node, result.action, result.outcome,
                      result.time, observations)


@pytest.mark.parametrize("order", ["observation-first", "result-first"])
async def test_a_carried_change_is_what_an_observation_and_a_result_give(
        fast: FastDaemon, order: str) -> None:
    # web02 the way the agent of the version before reports it: two messages.
    old, old_seen = await _start(fast, "web02.example.com")
    two = [ObservationReport(NODE1, fast.clock(), (old_seen,)), fast.task_result(old)]
    for report in two if order == "observation-first" else two[::-1]:
        await fast.report(report)
    # zone01 (also stopped) the way this version's agent does: one message.
    new, new_seen = await _start(fast, "zone01.example.com")
    delivery = await fast.report(_carrying(fast.task_result(new), new_seen))
    assert fast.bus.settled(delivery).how == "ack"

    before, after = _events(fast, "web02.example.com"), _events(fast, "zone01.example.com")
    assert [e[:4] for e in after] == [e[:4] for e in before]
    assert after[-1][1:] == ("starting", "running", "task", new.task_id, after[-1][5])
    assert before[-1][4] == old.task_id
    for task, hostname in ((old, "web02.example.com"), (new, "zone01.example.com")):
        record = fast.world.tasks.get(task.task_id)
        assert record is not None and record.state is TaskState.SUCCESS
        assert fast.vm(hostname).status is VmStatus.RUNNING
        assert len(fast.bus.tasks_done(task.task_id)) == 1


async def test_a_batch_is_one_delivery_in_one_turn_and_a_foreign_result_is_refused_alone(
        fast: FastDaemon) -> None:
    web02, web02_seen = await _start(fast, "web02.example.com")
    zone01, zone01_seen = await _start(fast, "zone01.example.com")
    # A result naming another VM than its task's, between the two good ones.
    forged = TaskResult(zone01.task_id, fast.vm("web01.example.com").uuid, NODE1,
                        zone01.action, fast.task_result(zone01).outcome, fast.clock())
    batch = ResultBatch(NODE1, fast.clock(), (
        _carrying(fast.task_result(web02), web02_seen), forged,
        _carrying(fast.task_result(zone01), zone01_seen)))
    delivery = await fast.report(batch)
    assert fast.bus.settled(delivery).how == "ack"
    value = fast.metrics.registry.get_sample_value(
        "vmd_agent_messages_refused_total", {"reason": "wrong_task"})
    assert value == 1
    for task, hostname in ((web02, "web02.example.com"), (zone01, "zone01.example.com")):
        assert fast.vm(hostname).status is VmStatus.RUNNING
        (change,) = [e for e in _events(fast, hostname) if e[2] == "running"]
        assert change[3:5] == ("task", task.task_id)
    assert fast.vm("web01.example.com").status is VmStatus.RUNNING  # untouched
