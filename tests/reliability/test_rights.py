"""Scenario 7: an owner cannot see, command or learn the existence of another owner's VM
through any path, nor read another owner's events under protocol.md §9's topic permission;
admin-only operations answer 403 to owners.

"Cannot learn the existence": every answer bob gets about alice's VM (by hostname or uuid)
is byte for byte the answer about a VM that does not exist; the same for alice's task ids.
"""

from __future__ import annotations

import asyncio
import json
import uuid as uuidlib
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import aiormq.exceptions
import pytest

from .cluster import OWNERS, Timing, VmInfo, ctl
from .load import Answer, Load
from .scenarios import Ctx, Env, Scale, booted

pytestmark = pytest.mark.slow

GHOST = VmInfo(str(uuidlib.uuid4()), "ghost.example.com", "alice", "node1", "kvm")


@pytest.fixture
async def ctx(rel_env: Env) -> AsyncIterator[Ctx]:
    async with booted(rel_env, "rights", Scale(repeats=0, nodes=1, per_node=4), Timing()) as c:
        yield c


def mine(ctx: Ctx, user: str) -> list[VmInfo]:
    return [vm for vm in ctx.fleet if vm.user == user]


async def ask(load: Load, user: str, method: str, path: str,
              data: dict[str, Any] | None = None, *, message_id: str | None = None) -> Answer:
    req = load.new(user, "call", method, path, data)
    if message_id is not None:
        req.message_id = message_id
    await load.perform(req)
    assert req.first is not None, f"no answer to {method} {path}"
    return req.first


def probes(name: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every request that names a VM (protocol.md §2)."""
    base = f"/vm/{name}"
    return [
        ("GET", f"{base}/status", {}),
        ("GET", f"{base}/status/", {}),
        ("GET", f"{base}/status/current", {}),
        ("PUT", f"{base}/status/current", {"force": True}),
        ("PUT", f"{base}/status/start", {}),
        ("PUT", f"{base}/status/stop", {"force": True}),
        ("PUT", f"{base}/status/stop", {"freeze": True}),
        ("PUT", f"{base}/status/stop", {"unfreeze": True}),
        ("PUT", f"{base}/status/reboot", {}),
        ("PUT", f"{base}/status/start", {"cdimage": "nope.iso"}),
        ("PUT", f"{base}/status/stop", {"timeout": "bad"}),
        ("PUT", f"{base}/status/bogus", {}),
        ("PUT", f"{base}/define", {"ram": 4096}),
        ("POST", f"{base}/status/start", {}),
    ]


async def test_an_owner_learns_nothing_of_another_owners_vms(ctx: Ctx) -> None:
    load = ctx.load
    alice_vm = mine(ctx, "alice")[0]
    # A task of alice's, pending or ended: its id must be as unknown to bob as a random one.
    task = await ask(load, "alice", "PUT", f"/vm/{alice_vm.uuid}/status/start")
    if task.code != 201:
        task = await ask(load, "alice", "PUT", f"/vm/{alice_vm.uuid}/status/stop",
                         {"force": True})
    assert task.code == 201, task
    task_id = task.body["task_id"]
    compared = 0
    for name, ghost in ((alice_vm.hostname, GHOST.hostname), (alice_vm.uuid, GHOST.uuid)):
        for (method, path, data), (_, ghost_path, _) in zip(probes(name), probes(ghost),
                                                            strict=True):
            real = await ask(load, "bob", method, path, data)
            fake = await ask(load, "bob", method, ghost_path, data)
            assert (real.code, real.body) == (fake.code, fake.body), (method, path)
            assert real.code in (404, 405), (method, path, real)
            compared += 1
    for _ in range(2):  # pending, then ended
        real = await ask(load, "bob", "GET", f"/task/{task_id}/status")
        fake = await ask(load, "bob", "GET", f"/task/{task_id[:-4]}ffff/status")
        assert (real.code, real.body) == (fake.code, fake.body) == (
            404, {"detail": "Task does not exist (anymore)"})
        own = await ask(load, "alice", "GET", f"/task/{task_id}/status")
        assert own.code in (200, 201, 400, 410)
        await _task_ended(load, task_id)
    # The list: only bob's own VMs, whatever the order.
    for order_by in ("hostname", "-status,uuid", "alias", "-status_change"):
        listing = await ask(load, "bob", "GET", "/vm/status", {"order_by": order_by})
        assert {vm["uuid"] for vm in listing.body["result"]} == {
            vm.uuid for vm in mine(ctx, "bob")}
    # Replaying alice's message_id as bob is bob's own request, not alice's answer.
    replay = await ask(load, "bob", "PUT", f"/vm/{alice_vm.uuid}/status/start",
                       message_id=_message_id_of(load, task_id))
    assert (replay.code, replay.body) == (404, {"detail": "VM not found"})
    # Nothing bob sent acted on alice's VM: its only power calls are alice's task.
    calls = [c for c in await _calls(ctx, alice_vm) if c.split()[0] in ("start", "stop",
                                                                        "reboot", "update")]
    assert len(calls) <= 1, calls
    assert compared == 28


async def test_admin_only_operations_answer_403_to_owners(ctx: Ctx) -> None:
    load = ctx.load
    vm = mine(ctx, "alice")[0]
    await _ensure_stopped(load, vm)
    forbidden = {"detail": "You do not have permission to perform this action."}
    for method, path, data in (
        ("PUT", f"/vm/{vm.uuid}/status/current", {}),
        ("PUT", f"/vm/{vm.uuid}/status/current", {"force": True}),
        ("PUT", f"/vm/{vm.uuid}/define", {"ram": 2048}),
        ("PUT", f"/vm/{vm.uuid}/status/stop", {"freeze": True}),  # instant: stopped
    ):
        answer = await ask(load, "alice", method, path, data)
        assert (answer.code, answer.body) == (403, forbidden), (method, path, data)
    frozen = await ask(load, "admin", "PUT", f"/vm/{vm.uuid}/status/stop", {"freeze": True})
    assert frozen.code == 200, frozen
    answer = await ask(load, "alice", "PUT", f"/vm/{vm.uuid}/status/stop", {"unfreeze": True})
    assert (answer.code, answer.body) == (403, forbidden)
    back = await ask(load, "admin", "PUT", f"/vm/{vm.uuid}/status/stop", {"unfreeze": True})
    assert back.code == 200, back


async def test_a_forged_user_id_is_refused_by_the_broker(ctx: Ctx) -> None:
    connection = await aio_pika.connect(ctx.env.url_for("bob"))
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("vmd.commands", ensure=False)
        vm = mine(ctx, "alice")[0]
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
            await exchange.publish(aio_pika.Message(
                json.dumps({"method": "PUT", "path": f"/vm/{vm.uuid}/status/stop"}).encode(),
                user_id="alice", reply_to="amq.rabbitmq.reply-to", correlation_id="forged"),
                "command", timeout=10)


async def test_topic_permissions_keep_an_owner_to_its_own_events(ctx: Ctx) -> None:
    """The vhost's permissions are docs/security.md's (scripts/ensure-rabbitmq): an owner's
    topic read pattern on vmd.events is `^(vm|task)\\.<its owner uuid>\\.`."""
    alice, bob = OWNERS["alice"], OWNERS["bob"]
    refused = []
    for key in ("vm.#", f"vm.{bob}.#", "task.#", f"task.{bob}.*.done", "#", "node.#",
                "*.*.*.status_change", f"vm.{bob}.*.status_change", f"vm.{alice}x.#"):
        refused.append(await _bind_refused(ctx.env.url_for("alice"), key))
    assert all(refused), refused
    # Her own binding works and carries only her VMs' events.
    connection = await aio_pika.connect(ctx.env.url_for("alice"))
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        events = await channel.get_exchange("vmd.events", ensure=False)
        await queue.bind(events, f"vm.{alice}.#")
        await queue.bind(events, f"task.{alice}.*.done")
        for vm in ctx.fleet:  # a change of every VM, alice's and bob's
            await _toggle(ctx.load, vm)
        seen = await _drain(queue, expect=len(mine(ctx, "alice")))
        assert seen and all(e.get("owner_uuid", alice) == alice for e in seen), seen
        assert {e["uuid"] for e in seen} <= {vm.uuid for vm in mine(ctx, "alice")}


# -- helpers ---------------------------------------------------------------------------------


async def _bind_refused(url: str, key: str) -> bool:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        events = await channel.get_exchange("vmd.events", ensure=False)
        try:
            await queue.bind(events, key)
        except aiormq.exceptions.ChannelAccessRefused:
            return True
        return False


async def _drain(queue: aio_pika.abc.AbstractQueue, expect: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while loop.time() < end:
        message = await queue.get(no_ack=True, fail=False)
        if message is None:
            if len({e["uuid"] for e in seen}) >= expect:
                break
            await asyncio.sleep(0.1)
            continue
        seen.append(json.loads(message.body))
    return seen


async def _toggle(load: Load, vm: VmInfo) -> None:
    status = await ask(load, "admin", "GET", f"/vm/{vm.uuid}/status")
    action = "stop" if status.body["result"]["status"] == "running" else "start"
    answer = await ask(load, "admin", "PUT", f"/vm/{vm.uuid}/status/{action}",
                       {"force": True} if action == "stop" else {})
    assert answer.code == 201, answer


async def _ensure_stopped(load: Load, vm: VmInfo) -> None:
    for _ in range(100):
        status = (await ask(load, "admin", "GET", f"/vm/{vm.uuid}/status")).body["result"]
        if status["status"] == "stopped" and not status["tasks"]:
            return
        if status["status"] == "running" and not status["tasks"]:
            await ask(load, "admin", "PUT", f"/vm/{vm.uuid}/status/stop", {"force": True})
        await asyncio.sleep(0.2)
    raise AssertionError(f"{vm.hostname} did not stop")


async def _task_ended(load: Load, task_id: str) -> None:
    for _ in range(100):
        if (await ask(load, "admin", "GET", f"/task/{task_id}/status")).code != 201:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"task {task_id} did not end")


def _message_id_of(load: Load, task_id: str) -> str:
    return load.tasks[task_id].message_id


async def _calls(ctx: Ctx, vm: VmInfo) -> list[str]:
    out = await ctl(ctx.cloud.node(vm.node), "calls", vm.uuid)
    return [line for line in out.splitlines() if line.strip()]
