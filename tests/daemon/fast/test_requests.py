"""Requests through the daemon's parts on a fake bus (tests/daemon/test_requests.py's
behaviour, without the broker): a start in stream mode from the request to the final reply,
the events and the order in between; the gate's refusals; instant freezes."""

from __future__ import annotations

import pytest
from support.fastdaemon import FastDaemon, vm_uuid

from vmd.model import Action, OutcomeKind, Reply, VmStatus


async def test_start_in_stream_mode_from_request_to_final_reply(fast: FastDaemon) -> None:
    web02 = fast.vm("web02.example.com")
    seq = web02.seq
    fast.bus.take()
    request = await fast.send(fast.bus.request(
        "alice", "PUT", "/vm/web02.example.com/status/start", stream=True))
    cid = request.correlation_id
    assert cid is not None
    (task,) = fast.tasks()
    assert (task.action, task.uuid, task.hostname, task.node) == (
        Action.START, vm_uuid(2), "web02.example.com", "node1")
    assert "reply_streams" not in task.params  # daemon-only, never sent to agents
    assert task.params["update"] is False and task.params["cdimage"] is None
    assert task.deadline == pytest.approx(task.created + 330.0)
    assert fast.bus.replies(cid) == [
        Reply(201, {"status": "PENDING", "result": None, "task_id": task.task_id})]
    assert fast.bus.settled(request).how == "ack"
    assert web02.status is VmStatus.STARTING
    (starting,) = fast.bus.status_changes(web02.uuid)
    assert starting == {
        "uuid": web02.uuid, "hostname": "web02.example.com", "alias": "web02", "node": "node1",
        "owner_uuid": web02.owner_uuid, "status": "starting", "previous": "stopped",
        "status_change": starting["status_change"], "seq": seq + 1,
        "task_id": task.task_id, "cause": "task", "principal": "alice",
    }
    # Published in the pipeline's order: the event, then the order, then the reply.
    kinds = [m.exchange for m in fast.bus.published]
    assert kinds == ["vmd.events", "vmd.agent.orders", ""]

    result = await fast.result(task)
    assert fast.bus.settled(result).how == "ack"
    success = Reply(200, {
        "status": "SUCCESS", "task_id": task.task_id,
        "result": {"returncode": 0, "message": "Successfully started VM web02.example.com"}})
    assert fast.bus.replies(cid) == [fast.bus.replies(cid)[0], success]
    assert web02.status is VmStatus.RUNNING
    running = fast.bus.status_changes(web02.uuid)[-1]
    assert (running["status"], running["previous"], running["seq"], running["cause"],
            running["task_id"]) == ("running", "starting", seq + 2, "task", task.task_id)
    assert fast.bus.tasks_done(task.task_id) == [{
        "task_id": task.task_id, "uuid": web02.uuid, "hostname": "web02.example.com",
        "action": "start", "status": "SUCCESS",
        "result": {"returncode": 0, "message": "Successfully started VM web02.example.com"}}]
    assert await fast.call("alice", "GET", f"/task/{task.task_id}/status") == Reply(
        200, success.body)
    listed = await fast.call("alice", "GET", "/vm/web02.example.com/status")
    assert listed.body["result"]["status"] == "running"
    assert listed.body["result"]["tasks"] == {}


@pytest.mark.parametrize(
    ("action", "hostname", "before", "during", "after", "verb"),
    [
        pytest.param("stop", "web01.example.com", VmStatus.RUNNING, VmStatus.STOPPING,
                     VmStatus.STOPPED, "completed stop for", id="stop"),
        pytest.param("reboot", "web01.example.com", VmStatus.RUNNING, VmStatus.STOPPING,
                     VmStatus.RUNNING, "completed reboot for", id="reboot"),
    ],
)
async def test_stop_and_reboot_end_to_end(fast: FastDaemon, action: str, hostname: str,
                                          before: VmStatus, during: VmStatus, after: VmStatus,
                                          verb: str) -> None:
    vm = fast.vm(hostname)
    assert vm.status is before
    reply = await fast.call("alice", "PUT", f"/vm/{hostname}/status/{action}")
    assert reply.code == 201 and reply.body["status"] == "PENDING"
    (task,) = fast.tasks()
    assert task.action.value == action and task.task_id == reply.body["task_id"]
    assert vm.status is during
    await fast.result(task)
    assert vm.status is after
    (done,) = fast.bus.tasks_done(task.task_id)
    assert done["status"] == "SUCCESS"
    assert done["result"]["message"] == f"Successfully {verb} VM {hostname}"
    statuses = [(e["previous"], e["status"]) for e in fast.bus.status_changes(vm.uuid)]
    assert statuses[-2:] == [(before.value, during.value), (during.value, after.value)]


async def test_failed_start_goes_back_and_resyncs(fast: FastDaemon) -> None:
    reply = await fast.call("alice", "PUT", "/vm/web02.example.com/status/start")
    assert reply.code == 201
    (task,) = fast.tasks()
    await fast.result(task, OutcomeKind.FAILURE, "boom", rc=1)
    _, resync = fast.tasks()  # a `current` re-sync, sent in the same turn
    assert resync.action is Action.CURRENT and resync.uuid == vm_uuid(2)
    assert fast.vm("web02.example.com").status is VmStatus.STOPPED
    done = await fast.call("alice", "GET", f"/task/{task.task_id}/status")
    assert done == Reply(400, {"status": "FAILURE", "task_id": task.task_id, "result": {
        "returncode": 1, "message": "boom", "detail": "Got bad return code (1). Error: boom"}})


@pytest.mark.parametrize(
    ("user", "method", "path", "data", "expected"),
    [
        pytest.param("alice", "PUT", "/vm/web01.example.com/status/start", {},
                     Reply(417, {"detail": "Bad action"}), id="start-running-417"),
        pytest.param("alice", "PUT", "/vm/web02.example.com/status/stop", {},
                     Reply(417, {"detail": "Bad action"}), id="stop-stopped-417"),
        pytest.param("alice", "PUT", "/vm/web01.example.com/status/explode", {},
                     Reply(417, {"detail": "Bad action"}), id="bad-action-417"),
        pytest.param("admin", "PUT", "/vm/internal.example.com/status/stop", {},
                     Reply(428, {"detail": "Internal VM can't be stopped"}), id="no-shutdown-428"),
        pytest.param("alice", "GET", "/vm/nope.example.com/status", {},
                     Reply(404, {"detail": "VM not found"}), id="vm-404"),
        pytest.param("alice", "GET", "/vm/db01.example.com/status", {},
                     Reply(404, {"detail": "VM not found"}), id="not-own-vm-404"),
        pytest.param("alice", "GET", "/task/0-a2327793-2600-423d-9f07/status", {},
                     Reply(404, {"detail": "Task does not exist (anymore)"}), id="task-404"),
        pytest.param("alice", "GET", "/vm/status", {"order_by": "node"}, Reply(412, {
            "detail": "Invalid order_by; Possible sort fields are: hostname, alias, status, "
                      "status_change, uuid"}), id="order-by-412"),
        pytest.param("alice", "PUT", "/vm/web02.example.com/status/stop", {"freeze": True},
                     Reply(403, {"detail": "You do not have permission to perform this "
                                           "action."}), id="freeze-not-admin-403"),
    ],
)
async def test_gate_refusals_publish_nothing_but_the_reply(
        fast: FastDaemon, user: str, method: str, path: str, data: dict[str, object],
        expected: Reply) -> None:
    fast.bus.take()
    request = fast.bus.request(user, method, path, data)
    await fast.send(request)
    assert fast.bus.replies(request.correlation_id or "") == [expected]
    assert [m.exchange for m in fast.bus.published] == [""]  # no event, no order
    assert fast.bus.settled(request).how == "ack"


@pytest.mark.parametrize(
    ("data", "result"),
    [
        pytest.param({"timeout": "soon"}, {"timeout": ["Enter a whole number."]}, id="timeout"),
        pytest.param({"force": "maybe"}, {"force": ["Must be a valid boolean."]}, id="force"),
    ],
)
async def test_field_errors_are_400_failure(fast: FastDaemon, data: dict[str, object],
                                            result: dict[str, list[str]]) -> None:
    reply = await fast.call("alice", "PUT", "/vm/web01.example.com/status/stop", data)
    assert reply.code == 400
    assert reply.body["status"] == "FAILURE" and reply.body["result"] == result
    assert reply.body["task_id"].startswith("0-")
    assert fast.tasks() == []


async def test_cdimage_then_the_pending_task_refusals_423_and_409(fast: FastDaemon) -> None:
    bad = await fast.call("alice", "PUT", "/vm/web02.example.com/status/start",
                          {"cdimage": "nope.iso"})
    assert bad.code == 400 and bad.body["result"] == {
        "cdimage": ["Select a valid choice. nope.iso is not one of the available choices."]}
    good = await fast.call("alice", "PUT", "/vm/web02.example.com/status/start",
                           {"cdimage": "debian-12.iso"})
    assert good.code == 201
    (task,) = fast.tasks()
    assert task.params["cdimage"] == "debian-12.iso"
    again = await fast.call("alice", "PUT", "/vm/web02.example.com/status/start")
    assert again == Reply(423, {"detail": "VM is already starting"})
    stop = await fast.call("alice", "PUT", "/vm/web02.example.com/status/stop")
    assert stop == Reply(409, {"detail": "VM has pending tasks"})
    assert len(fast.tasks()) == 1


async def test_freeze_and_unfreeze_are_instant(fast: FastDaemon) -> None:
    web02 = fast.vm("web02.example.com")
    frozen = await fast.call("admin", "PUT", "/vm/web02.example.com/status/stop",
                             {"freeze": "true"})
    assert frozen.code == 200 and frozen.body["status"] == "SUCCESS"
    assert frozen.body["result"] == {
        "message": "VM web02.example.com is already stopped. Changing status to frozen."}
    assert web02.status is VmStatus.FROZEN
    start = await fast.call("alice", "PUT", "/vm/web02.example.com/status/start")
    assert start == Reply(417, {"detail": "Bad action"})
    thawed = await fast.call("admin", "PUT", "/vm/web02.example.com/status/stop",
                             {"unfreeze": True})
    assert thawed.body["result"] == {"message": "Removing frozen status for VM web02.example.com."}
    assert web02.status is VmStatus.STOPPED
    changes = [(e["previous"], e["status"], e["cause"], e["task_id"])
               for e in fast.bus.status_changes(web02.uuid)[-2:]]
    assert changes == [("stopped", "frozen", "admin", None), ("frozen", "stopped", "admin", None)]
    assert fast.tasks() == []  # nothing was sent to the node


async def test_a_frozen_vm_ignores_its_node(fast: FastDaemon) -> None:
    await fast.call("admin", "PUT", "/vm/web02.example.com/status/stop", {"freeze": True})
    await fast.observe("node1", fast.fleet["web02.example.com"], "running")
    assert fast.vm("web02.example.com").status is VmStatus.FROZEN
    assert fast.metrics.frozen_ignored._value.get() == 1


async def test_put_current_by_an_admin_makes_a_task(fast: FastDaemon) -> None:
    reply = await fast.call("admin", "PUT", "/vm/web01.example.com/status/current")
    assert reply.code == 201 and reply.body["status"] == "PENDING"
    (task,) = fast.tasks()
    assert task.action is Action.CURRENT and task.task_id == reply.body["task_id"]
