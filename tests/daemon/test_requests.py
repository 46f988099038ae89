"""Requests end to end through the daemon: a start in stream mode (reply, event, task on the
node's queue, result, final reply, task.done), gate answers on the wire, instant freezes."""

from __future__ import annotations

import asyncio

import pytest

from vmd.model import Action, OutcomeKind, Reply, Request, VmStatus

from .conftest import Cloud
from .harness import vm_uuid


async def test_start_end_to_end_in_stream_mode(cloud: Cloud) -> None:
    web02 = cloud.vm("web02.example.com")
    seq = web02.seq
    replies: list[Reply] = []

    async def collect() -> None:
        request = Request("PUT", "/vm/web02.example.com/status/start")
        async for reply in cloud.alice.stream(request, timeout=10, final_timeout=10):
            replies.append(reply)

    streaming = asyncio.create_task(collect())
    task = await cloud.agent.next_task()
    assert (task.action, task.uuid, task.hostname, task.node) == (
        Action.START, vm_uuid(2), "web02.example.com", "node1")
    assert "reply_streams" not in task.params  # daemon-only, never sent to agents
    assert task.params["update"] is False and task.params["cdimage"] is None
    assert task.deadline == pytest.approx(task.created + 330.0)
    assert len(replies) == 1
    assert replies[0] == Reply(201, {"status": "PENDING", "result": None,
                                     "task_id": task.task_id})
    assert web02.status is VmStatus.STARTING
    (starting,) = await cloud.events.wait(lambda _: [
        e for e in cloud.events.status_changes(web02.uuid) if e["status"] == "starting"])
    assert starting == {
        "uuid": web02.uuid, "hostname": "web02.example.com", "alias": "web02", "node": "node1",
        "owner_uuid": web02.owner_uuid, "status": "starting", "previous": "stopped",
        "status_change": starting["status_change"], "seq": seq + 1,
        "task_id": task.task_id, "cause": "task", "principal": "alice",
    }

    await cloud.agent.result(task)
    await asyncio.wait_for(streaming, 10)
    assert replies[1] == Reply(200, {
        "status": "SUCCESS", "task_id": task.task_id,
        "result": {"returncode": 0, "message": "Successfully started VM web02.example.com"}})
    assert web02.status is VmStatus.RUNNING
    await cloud.events.wait(lambda _: cloud.events.tasks_done(task.task_id))
    running = cloud.events.status_changes(web02.uuid)[-1]
    assert (running["status"], running["previous"], running["seq"], running["cause"],
            running["task_id"]) == ("running", "starting", seq + 2, "task", task.task_id)
    assert cloud.events.tasks_done(task.task_id) == [{
        "task_id": task.task_id, "uuid": web02.uuid, "hostname": "web02.example.com",
        "action": "start", "status": "SUCCESS",
        "result": {"returncode": 0, "message": "Successfully started VM web02.example.com"}}]
    status = await cloud.call("alice", "GET", f"/task/{task.task_id}/status")
    assert status == Reply(200, replies[1].body)
    listed = await cloud.call("alice", "GET", "/vm/web02.example.com/status")
    assert listed.body["result"]["status"] == "running"
    assert listed.body["result"]["tasks"] == {}


async def test_failed_start_goes_back_and_resyncs(cloud: Cloud) -> None:
    reply = await cloud.call("alice", "PUT", "/vm/web02.example.com/status/start")
    assert reply.code == 201
    task = await cloud.agent.next_task()
    await cloud.agent.result(task, OutcomeKind.FAILURE, "boom", rc=1)
    resync = await cloud.agent.next_task()  # a `current` re-sync, sent straight away
    assert resync.action is Action.CURRENT and resync.uuid == vm_uuid(2)
    vm = cloud.vm("web02.example.com")
    assert vm.status is VmStatus.STOPPED
    done = await cloud.call("alice", "GET", f"/task/{task.task_id}/status")
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
                     Reply(428, {"detail": "Internal VM can't be stopped"}), id="no-shutdown"),
        pytest.param("alice", "GET", "/vm/nope.example.com/status", {},
                     Reply(404, {"detail": "VM not found"}), id="vm-404"),
        pytest.param("alice", "GET", "/task/0-a2327793-2600-423d-9f07/status", {},
                     Reply(404, {"detail": "Task does not exist (anymore)"}), id="task-404"),
        pytest.param("alice", "GET", "/vm/status", {"order_by": "node"}, Reply(412, {
            "detail": "Invalid order_by; Possible sort fields are: hostname, alias, status, "
                      "status_change, uuid"}), id="order-by-412"),
        pytest.param("admin", "PUT", "/vm/web01.example.com/status/current", {},
                     Reply(201, {}), id="put-current-201"),
    ],
)
async def test_gate_answers_on_the_wire(cloud: Cloud, user: str, method: str, path: str,
                                        data: dict[str, object], expected: Reply) -> None:
    reply = await cloud.call(user, method, path, data)
    if expected.code == 201:
        assert reply.code == 201 and reply.body["status"] == "PENDING"
    else:
        assert reply == expected


@pytest.mark.parametrize(
    ("data", "result"),
    [
        pytest.param({"timeout": "soon"}, {"timeout": ["Enter a whole number."]}, id="timeout"),
        pytest.param({"force": "maybe"}, {"force": ["Must be a valid boolean."]}, id="force"),
    ],
)
async def test_field_errors_are_400_failure(cloud: Cloud, data: dict[str, object],
                                            result: dict[str, list[str]]) -> None:
    reply = await cloud.call("alice", "PUT", "/vm/web01.example.com/status/stop", data)
    assert reply.code == 400
    assert reply.body["status"] == "FAILURE" and reply.body["result"] == result
    assert reply.body["task_id"].startswith("0-")


async def test_cdimage_must_be_an_iso_the_node_reported(cloud: Cloud) -> None:
    bad = await cloud.call("alice", "PUT", "/vm/web02.example.com/status/start",
                           {"cdimage": "nope.iso"})
    assert bad.code == 400 and bad.body["result"] == {
        "cdimage": ["Select a valid choice. nope.iso is not one of the available choices."]}
    good = await cloud.call("alice", "PUT", "/vm/web02.example.com/status/start",
                            {"cdimage": "debian-12.iso"})
    assert good.code == 201
    task = await cloud.agent.next_task()
    assert task.params["cdimage"] == "debian-12.iso"
    again = await cloud.call("alice", "PUT", "/vm/web02.example.com/status/start")
    assert again == Reply(423, {"detail": "VM is already starting"})
    stop = await cloud.call("alice", "PUT", "/vm/web02.example.com/status/stop")
    assert stop == Reply(409, {"detail": "VM has pending tasks"})


async def test_freeze_and_unfreeze_are_instant(cloud: Cloud) -> None:
    web02 = cloud.vm("web02.example.com")
    denied = await cloud.call("alice", "PUT", "/vm/web02.example.com/status/stop",
                              {"freeze": True})
    assert denied == Reply(403, {"detail": "You do not have permission to perform this action."})
    frozen = await cloud.call("admin", "PUT", "/vm/web02.example.com/status/stop",
                              {"freeze": "true"})
    assert frozen.code == 200 and frozen.body["status"] == "SUCCESS"
    assert frozen.body["result"] == {
        "message": "VM web02.example.com is already stopped. Changing status to frozen."}
    assert web02.status is VmStatus.FROZEN
    start = await cloud.call("alice", "PUT", "/vm/web02.example.com/status/start")
    assert start == Reply(417, {"detail": "Bad action"})
    thawed = await cloud.call("admin", "PUT", "/vm/web02.example.com/status/stop",
                              {"unfreeze": True})
    assert thawed.body["result"] == {"message": "Removing frozen status for VM web02.example.com."}
    assert web02.status is VmStatus.STOPPED
    await cloud.events.wait(lambda _: len(cloud.events.status_changes(web02.uuid)) >= 3)
    changes = [(e["previous"], e["status"], e["cause"], e["task_id"])
               for e in cloud.events.status_changes(web02.uuid)[-2:]]
    assert changes == [("stopped", "frozen", "admin", None), ("frozen", "stopped", "admin", None)]
    assert cloud.agent.tasks.empty()  # nothing was sent to the node
