"""A request end to end through the daemon on the real broker: a start in stream mode (reply,
event, task on the node's queue, result, final reply, task.done), over the bus client's
stream and the fake agent's queue. The gate's answers, field errors, freezes and a failed
start are behaviour, tested without the broker in tests/daemon/fast/test_requests.py."""

from __future__ import annotations

import asyncio

import pytest

from vmd.model import Action, Reply, Request, VmStatus

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
