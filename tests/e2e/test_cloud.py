"""The whole system end to end: real `vmd daemon`, real `vmd agent`s, the vmadm simulator.

Each test drives the cloud only through the public protocol (plain aio-pika, vmd.client,
vmctl) and the simulator's control commands, and checks what a user sees.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import aio_pika
import pytest
from support.cloud import ALICE_OWNER, Cloud, base_env, boot, vm_statuses, wait_for

from vmd.client import Client

pytestmark = pytest.mark.slow


async def test_start_stop_freeze_unfreeze_with_vmctl(cloud: Cloud, admin: Client,
                                                      amqp_url_for: Callable[[str], str]) -> None:
    await boot(cloud, admin)
    env = {**base_env(), "VMD_URL": amqp_url_for("admin")}

    def vmctl(*args: str) -> tuple[int, dict[str, Any]]:
        done = subprocess.run(["vmctl", *args], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        return done.returncode, json.loads(done.stdout)

    rc, out = vmctl("set", "/vm/web01.example.com/status/start")
    assert (rc, out["status"]) == (0, 200), out
    assert out["text"]["result"] == {"returncode": 0,
                                     "message": "Successfully started VM web01.example.com"}
    rc, out = vmctl("set", "/vm/web01.example.com/status/start")
    assert (rc, out["status"], out["text"]) == (1, 417, {"detail": "Bad action"})
    rc, out = vmctl("set", "/vm/web01.example.com/status/stop", "-freeze")
    assert (rc, out["status"]) == (0, 200), out
    assert (await vm_statuses(admin))["web01.example.com"] == "frozen"
    rc, out = vmctl("set", "/vm/web01.example.com/status/start")
    assert (rc, out["status"]) == (1, 417)
    rc, out = vmctl("set", "/vm/web01.example.com/status/stop", "-unfreeze")
    assert (rc, out["status"]) == (0, 200)
    assert out["text"]["result"]["message"] == "Removing frozen status for VM web01.example.com."
    rc, out = vmctl("set", "/vm/internal.example.com/status/stop")
    assert (rc, out["status"], out["text"]["detail"]) == (1, 428, "Internal VM can't be stopped")


async def test_plain_amqp_stream_mode_and_events(cloud: Cloud, admin: Client,
                                                 amqp_url_for: Callable[[str], str]) -> None:
    uuids = await boot(cloud, admin)
    connection = await aio_pika.connect(amqp_url_for("admin"))
    async with connection:
        channel = await connection.channel()
        events = await channel.declare_queue(exclusive=True)
        exchange = await channel.get_exchange("vmd.events")
        await events.bind(exchange, routing_key="#")
        replies: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        reply_queue = await channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
        await reply_queue.consume(replies.put, no_ack=True)
        body = {"method": "PUT", "path": "/vm/web01.example.com/status/start/", "data": {}}
        # The protocol's way in: the command exchange (a principal may not publish on the
        # default exchange, which reaches every queue by name: docs/security.md).
        commands = await channel.get_exchange("vmd.commands", ensure=False)
        await commands.publish(
            aio_pika.Message(json.dumps(body).encode(), content_type="application/json",
                             reply_to="amq.rabbitmq.reply-to", correlation_id="c-1",
                             message_id=str(uuid.uuid4()), user_id="admin",
                             headers={"stream": True}),
            routing_key="command",
        )
        first = await asyncio.wait_for(replies.get(), 10)
        first_body = json.loads(first.body)
        assert first.correlation_id == "c-1"
        assert first.headers["code"] == 201
        assert first_body["code"] == 201 and first_body["status"] == "PENDING"
        task_id = first_body["task_id"]
        assert task_id.startswith("0-") and len(task_id) == 25
        final = await asyncio.wait_for(replies.get(), 20)
        final_body = json.loads(final.body)
        assert final.correlation_id == "c-1"
        assert final_body == {"code": 200, "status": "SUCCESS", "task_id": task_id,
                              "result": {"returncode": 0, "message":
                                         "Successfully started VM web01.example.com"}}

        seen: list[tuple[str, dict[str, Any]]] = []

        async def got_all() -> bool:
            while True:
                message = await events.get(no_ack=True, fail=False)
                if message is None:
                    break
                seen.append((message.routing_key or "", json.loads(message.body)))
            return any(key.endswith(".done") for key, _ in seen) and sum(
                1 for key, _ in seen if key.endswith("status_change")) >= 2

        await wait_for(got_all, timeout=10)
    web = uuids["web01.example.com"]
    changes = [b for k, b in seen if k == f"vm.{ALICE_OWNER}.{web}.status_change"]
    assert [(c["previous"], c["status"]) for c in changes][:2] == [
        ("stopped", "starting"), ("starting", "running")]
    assert changes[1]["seq"] == changes[0]["seq"] + 1
    assert changes[0]["cause"] == "task" and changes[0]["task_id"] == task_id
    # The node's own "running" event may beat the task's result; either way the change is
    # the task's, once (protocol.md §9, attribution).
    assert (changes[1]["cause"], changes[1]["task_id"], changes[1]["principal"]) == (
        "task", task_id, "admin")
    done = [b for k, b in seen if k == f"task.{ALICE_OWNER}.{task_id}.done"]
    assert done and done[0]["status"] == "SUCCESS" and done[0]["action"] == "start"


async def test_out_of_band_crash_and_operator_start(cloud: Cloud, admin: Client) -> None:
    uuids = await boot(cloud, admin)
    node = cloud.node("node1")
    node.ctl("crash", uuids["db01.example.com"])
    await wait_for(lambda: _status_is(admin, "db01.example.com", "stopped"), timeout=5)
    node.vmadm("start", uuids["web01.example.com"], check=True)
    await wait_for(lambda: _status_is(admin, "web01.example.com", "running"), timeout=5)
    new = node.create("new01.example.com", state="running")
    await wait_for(lambda: _status_is(admin, "new01.example.com", "running"), timeout=5)
    node.ctl("destroy", new)
    await wait_for(lambda: _status_is(admin, "new01.example.com", "notcreated"), timeout=5)


async def _status_is(client: Client, hostname: str, status: str) -> bool:
    return (await vm_statuses(client)).get(hostname) == status


async def test_owners_see_and_command_only_their_vms(cloud: Cloud, admin: Client,
                                                     alice: Client, bob: Client) -> None:
    uuids = await boot(cloud, admin)
    assert set(await vm_statuses(alice)) == {"web01.example.com", "db01.example.com",
                                             "internal.example.com"}
    assert set(await vm_statuses(bob)) == {"app01.example.com"}
    for call in (bob.status("web01.example.com"), bob.status(uuids["web01.example.com"]),
                 bob.start("web01.example.com"), bob.current("web01.example.com")):
        reply = await call
        assert (reply.code, reply.body) == (404, {"detail": "VM not found"})
    reply = await bob.resync("app01.example.com")
    assert (reply.code, reply.body["detail"]) == (
        403, "You do not have permission to perform this action.")
    reply = await alice.start("web01.example.com")
    assert reply.code == 201
    stolen = await bob.task_status(reply.body["task_id"])
    assert stolen.code == 404


async def test_node_loss_and_return(cloud: Cloud, admin: Client) -> None:
    await boot(cloud, admin)
    cloud.kill("agent-node1")

    async def unreachable() -> bool:
        reply = await admin.status("web01.example.com")
        return reply.body.get("result", {}).get("node_status") == "unreachable"

    await wait_for(unreachable, timeout=10)
    reply = await admin.start("web01.example.com")
    assert (reply.code, reply.body) == (423, {"detail": "Node is not operational"})
    cloud.node("node1").vmadm("start", cloud_uuid(cloud, "web01.example.com"), check=True)
    cloud.start_agent(cloud.node("node1"))
    await wait_for(lambda: _status_is(admin, "web01.example.com", "running"), timeout=15)
    # The returning agent's full sync makes its node online with it (docs/daemon.md).
    reply = await admin.status("web01.example.com")
    assert reply.body["result"]["node_status"] == "online"
    reply = await admin.start("web01.example.com")
    assert (reply.code, reply.body.get("detail")) != (423, "Node is not operational")


def cloud_uuid(cloud: Cloud, hostname: str) -> str:
    out = cloud.node("node1").vmadm("lookup", f"hostname={hostname}", check=True)
    return out.stdout.split()[0]


async def test_daemon_sigkill_mid_task_recovers(cloud: Cloud, admin: Client) -> None:
    uuids = await boot(cloud, admin)
    node = cloud.node("node1")
    # The guest ignores the shutdown: the stop takes its whole -t (scaled: 60 s -> 1.2 s).
    node.ctl("fault", uuids["app01.example.com"], "guest_honors_shutdown=false")
    reply = await admin.stop("app01.example.com", timeout=60)
    assert reply.code == 201
    task_id = reply.body["task_id"]
    cloud.kill("daemon")
    cloud.start_daemon()

    async def ended() -> bool:
        try:
            status = await admin.task_status(task_id)
        except Exception:
            return False
        return status.code != 201

    await wait_for(ended, timeout=30, interval=0.3)
    final = await admin.task_status(task_id)
    assert final.code == 200, final
    assert (await vm_statuses(admin))["app01.example.com"] == "stopped"
    assert not [s for s in (await vm_statuses(admin)).values() if s in ("starting", "stopping")]
    stops = [c for c in node.calls(uuids["app01.example.com"]) if c.startswith("stop")]
    assert len(stops) == 1, stops


async def test_sigterm_drains_and_exits_zero(cloud: Cloud, admin: Client) -> None:
    await boot(cloud, admin)
    cloud.signal("daemon", signal.SIGTERM)
    assert cloud.wait("daemon", timeout=30) == 0
    cloud.signal("agent-node1", signal.SIGTERM)
    assert cloud.wait("agent-node1", timeout=30) == 0
