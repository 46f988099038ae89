"""protocol.md §5 idempotency over the real broker (stream replays through the bus client,
keys surviving a real daemon restart) and §1 principals (owners see and command only their
VMs, admin-only operations are 403). "Same message_id twice is executed once" is behaviour,
tested without the broker in tests/daemon/fast/test_idempotency.py."""

from __future__ import annotations

import asyncio

from vmd.model import Reply, Request, VmStatus

from .conftest import Cloud, StartDaemon
from .harness import eventually


async def test_stream_retry_gets_the_final_reply(cloud: Cloud) -> None:
    request = Request("PUT", "/vm/web02.example.com/status/start")
    got: list[Reply] = []

    async def stream() -> None:
        async for reply in cloud.alice.stream(request, message_id="s1", timeout=10,
                                              final_timeout=10):
            got.append(reply)

    # A retry while the task runs is subscribed to its end as well.
    first = asyncio.create_task(stream())
    task = await cloud.agent.next_task()
    second = asyncio.create_task(stream())
    # The retry is answered (201) before the task ends: it was subscribed in the same step.
    await eventually(lambda: len(got) == 2, what="the retry's first answer")
    await cloud.agent.result(task)
    await asyncio.wait_for(asyncio.gather(first, second), 10)
    assert [r.code for r in got] == [201, 201, 200, 200]
    assert {r.body["task_id"] for r in got} == {task.task_id}
    # After the end, a retry gets both answers at once.
    got.clear()
    await asyncio.wait_for(stream(), 10)
    assert [r.code for r in got] == [201, 200]
    assert got[1].body["result"]["message"] == "Successfully started VM web02.example.com"


async def test_keys_and_state_survive_a_restart(cloud: Cloud, start_daemon: StartDaemon) -> None:
    frozen = await cloud.call("admin", "PUT", "/vm/web02.example.com/status/stop",
                              {"freeze": True}, message_id="freeze-1")
    started = await cloud.call("alice", "PUT", "/vm/zone01.example.com/status/start",
                               message_id="start-zone01")
    task = await cloud.agent.next_task()
    cloud.agent.auto_sync = False  # the restart's sync request stays unanswered here
    await cloud.daemon.shutdown()
    daemon = await start_daemon()
    assert daemon.world.vms.by_hostname["web02.example.com"].status is VmStatus.FROZEN
    zone01 = daemon.world.vms.by_hostname["zone01.example.com"]
    assert zone01.status is VmStatus.STARTING and zone01.task_id == task.task_id
    assert await cloud.call("admin", "PUT", "/vm/web02.example.com/status/stop",
                            {"freeze": True}, message_id="freeze-1") == frozen
    assert await cloud.call("alice", "PUT", "/vm/zone01.example.com/status/start",
                            message_id="start-zone01") == started
    # The restored task still completes, once.
    await cloud.agent.result(task)
    done = await cloud.events.wait(lambda _: cloud.events.tasks_done(task.task_id))
    assert len(done) == 1 and done[0]["status"] == "SUCCESS"
    assert zone01.status is VmStatus.RUNNING
    assert [s.reason for s in cloud.agent.syncs][-1] == "daemon start"


async def test_owners_see_and_command_only_their_vms(cloud: Cloud) -> None:
    not_found = Reply(404, {"detail": "VM not found"})
    forbidden = Reply(403, {"detail": "You do not have permission to perform this action."})
    listed = await cloud.call("bob", "GET", "/vm/status")
    assert [vm["hostname"] for vm in listed.body["result"]] == ["db01.example.com"]
    everything = await cloud.call("admin", "GET", "/vm/status")
    assert len(everything.body["result"]) == 5
    assert await cloud.call("bob", "GET", "/vm/web01.example.com/status") == not_found
    assert await cloud.call("bob", "PUT", "/vm/web01.example.com/status/stop") == not_found
    assert await cloud.call("alice", "PUT", "/vm/db01.example.com/status/stop") == not_found
    # Admin-only operations on one's own VM: 403.
    assert await cloud.call("alice", "PUT", "/vm/web01.example.com/status/current") == forbidden
    assert await cloud.call("alice", "PUT", "/vm/web01.example.com/define",
                            {"ram": 1}) == forbidden
    # A task of another owner does not exist for bob.
    stop = await cloud.call("alice", "PUT", "/vm/web01.example.com/status/stop")
    assert stop.code == 201
    task_path = f"/task/{stop.body['task_id']}/status"
    assert await cloud.call("bob", "GET", task_path) == Reply(
        404, {"detail": "Task does not exist (anymore)"})
    assert (await cloud.call("admin", "GET", task_path)).code == 201
    assert (await cloud.call("alice", "GET", task_path)).code == 201
