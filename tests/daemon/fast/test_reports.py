"""Only a node's own agent speaks for its node (docs/security.md), and nothing a client sends
can stop the daemon, on its parts without the broker (the broker tests,
tests/daemon/test_forged_reports.py and test_strict_input.py, send the same through real
broker users). Each forged report is dropped (acked), counted in
`vmd_agent_messages_refused_total{reason}` and changes nothing; the genuine one after it
still applies. A value JSON can spell but no answer can carry is a 400 at the edge."""

from __future__ import annotations

import pytest
from support.fastdaemon import FastDaemon

from vmd.bus import FullSync, ObservationReport, TaskResult
from vmd.model import NodeName, Observation, Reply, TaskState, VmStatus

NODE1 = NodeName("node1")


def refused(fast: FastDaemon, reason: str) -> float:
    value = fast.metrics.registry.get_sample_value(
        "vmd_agent_messages_refused_total", {"reason": reason})
    return value or 0.0


def _stopped(fast: FastDaemon, hostname: str) -> Observation:
    vm = fast.vm(hostname)
    return Observation(vm.uuid, NODE1, "stopped", fast.clock(), None)


@pytest.mark.parametrize(
    ("user", "reason"),
    [
        pytest.param("vmd-agent-node2", "wrong_node", id="another-nodes-agent"),
        pytest.param("bob", "unknown_sender", id="no-agent"),
        pytest.param("vmd-agent-node9", "wrong_node", id="an-agent-of-no-node-here"),
    ],
)
async def test_observations_for_a_node_its_sender_does_not_serve_are_refused(
        fast: FastDaemon, user: str, reason: str) -> None:
    report = ObservationReport(NODE1, fast.clock(), (_stopped(fast, "web01.example.com"),))
    delivery = await fast.report(report, user=user)
    assert fast.bus.settled(delivery).how == "ack"  # dropped: a repeat is refused again
    assert refused(fast, reason) == 1
    assert fast.vm("web01.example.com").status is VmStatus.RUNNING
    await fast.report(report)  # the node's own agent: applied
    assert fast.vm("web01.example.com").status is VmStatus.STOPPED


async def test_a_full_sync_for_a_node_its_sender_does_not_serve_is_refused(
        fast: FastDaemon) -> None:
    before = {vm.hostname: vm.status for vm in fast.world.vms}
    await fast.report(FullSync(NODE1, fast.clock(), (), ()), user="vmd-agent-node2")
    assert refused(fast, "wrong_node") == 1
    assert {vm.hostname: vm.status for vm in fast.world.vms} == before  # none "gone"


async def test_a_result_from_another_node_or_for_another_vm_is_refused(
        fast: FastDaemon) -> None:
    await fast.call("alice", "PUT", "/vm/web02.example.com/status/start")
    (task,) = fast.tasks()
    ok = fast.task_result(task, state="running")
    # node2's agent: as itself (the task was sent to node1), and speaking for node1.
    await fast.report(TaskResult(task.task_id, task.uuid, NodeName("node2"), task.action,
                                 ok.outcome, ok.time), user="vmd-agent-node2")
    await fast.report(ok, user="vmd-agent-node2")
    # node1's own agent, but naming another VM than the task's.
    web01 = fast.vm("web01.example.com").uuid
    await fast.report(TaskResult(task.task_id, web01, NODE1, task.action, ok.outcome, ok.time))
    assert refused(fast, "wrong_task") == 2 and refused(fast, "wrong_node") == 1
    record = fast.world.tasks.get(task.task_id)
    assert record is not None and record.state is TaskState.PENDING
    assert fast.vm("web02.example.com").status is VmStatus.STARTING
    await fast.report(ok)
    assert fast.vm("web02.example.com").status is VmStatus.RUNNING


@pytest.mark.parametrize(
    ("user", "body", "reason"),
    [
        pytest.param("alice", rb'{"method": "\ud800", "path": "/vm/status"}',
                     r"a lone surrogate \ud800 in a string", id="method-405-echo"),
        pytest.param("alice", rb'{"method": "PUT", "path": "/vm/web02.example.com/status/start",'
                     rb' "data": {"cdimage": "\udfff"}}',
                     r"a lone surrogate \udfff in a string", id="cdimage-choice-echo"),
        pytest.param("alice", rb'{"method": "GET", "path": "/vm/\udc00/status"}',
                     r"a lone surrogate \udc00 in a string", id="path"),
        pytest.param("admin", rb'{"method": "PUT", "path": "/vm/web02.example.com/define",'
                     rb' "data": {"ram": 1e400}}', "a number is out of range", id="define-1e400"),
        pytest.param("admin", rb'{"method": "PUT", "path": "/vm/web02.example.com/status/stop",'
                     rb' "data": {"timeout": -1e400}}', "a number is out of range",
                     id="timeout-minus-1e400"),
    ],
)
async def test_refused_at_the_edge_and_the_daemon_goes_on(
        fast: FastDaemon, user: str, body: bytes, reason: str) -> None:
    request = await fast.send(fast.bus.request(user, "", "", body=body, message_id="m-hostile"))
    assert fast.bus.replies(request.correlation_id or "") == [
        Reply(400, {"detail": f"Malformed request: body is not JSON ({reason})"})]
    assert (await fast.call(user, "GET", "/vm/web02.example.com/status")).code == 200
    assert fast.vm("web02.example.com").pending_definition is None
