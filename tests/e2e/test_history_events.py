"""Issue 15 end to end (real daemon, agents and simulator; public protocol only): every change
explained (task and principal, or the node), the power history (newest first, paged,
owner-scoped, kept over a daemon restart), `vmctl events` live, and node liveness from what
the agent says (online at its sync, unreachable after 3 of its own heartbeat intervals)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import aio_pika
import aiohttp
import pytest
from support.cloud import ALICE_OWNER, BIN, Cloud, base_env, boot, wait_for

from vmd.client import Client

pytestmark = pytest.mark.slow

Change = tuple[str, str, str, str | None, str | None]


class Events:
    """Every status change on `vmd.events`, as an admin subscriber sees them."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.seen.append((message.routing_key or "", json.loads(message.body)))

    def changes(self, uuid: str) -> list[Change]:
        return [(b["previous"], b["status"], b["cause"], b["task_id"], b["principal"])
                for k, b in self.seen if k.endswith(f".{uuid}.status_change")]


async def _subscribe(url: str) -> tuple[aio_pika.abc.AbstractConnection, Events]:
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind("vmd.events", routing_key="vm.#")
    events = Events()
    await queue.consume(events.on_message, no_ack=True)
    return connection, events


async def _until(events: Events, uuid: str, n: int) -> list[Change]:
    await wait_for(lambda: len(events.changes(uuid)) >= n, timeout=20)
    return events.changes(uuid)


async def test_changes_attributed_history_paged_scoped_and_kept(
    cloud: Cloud, admin: Client, alice: Client, bob: Client,
    amqp_url_for: Callable[[str], str],
) -> None:
    uuids = await boot(cloud, admin)
    connection, events = await _subscribe(amqp_url_for("admin"))
    async with connection:
        web = uuids["web01.example.com"]
        start = await alice.start("web01.example.com", wait=True)
        assert start.code == 200, start
        stop = await admin.stop("web01.example.com", wait=True)
        assert stop.code == 200, stop
        start2 = await alice.start("web01.example.com", wait=True)
        reboot = await alice.reboot("web01.example.com", wait=True)
        assert (start2.code, reboot.code) == (200, 200), (start2, reboot)
        t1, t2, t3, t4 = (r.body["task_id"] for r in (start, stop, start2, reboot))
        # Whichever reaches vmd first, the watcher's report or the task's result, the change
        # is the task's, and there is exactly one per step.
        expected = [
            ("stopped", "starting", "task", t1, "alice"),
            ("starting", "running", "task", t1, "alice"),
            ("running", "stopping", "task", t2, "admin"),
            ("stopping", "stopped", "task", t2, "admin"),
            ("stopped", "starting", "task", t3, "alice"),
            ("starting", "running", "task", t3, "alice"),
            ("running", "stopping", "task", t4, "alice"),
        ]
        def rebooted() -> bool:
            last = events.changes(web)[-1:]
            return bool(last) and last[0][1:4] == ("running", "task", t4)

        await wait_for(rebooted, timeout=20)
        changes = events.changes(web)
        assert changes[:7] == expected
        # A KVM reboot may show its halt (vmadm's stopped, then running): the reboot's too.
        assert changes[7:] in ([("stopping", "running", "task", t4, "alice")],
                               [("stopping", "stopped", "task", t4, "alice"),
                                ("stopped", "running", "task", t4, "alice")]), changes
        db = uuids["db01.example.com"]
        cloud.node("node1").ctl("crash", db)
        assert await _until(events, db, 1) == [("running", "stopped", "node", None, None)]

    reply = await alice.history("web01.example.com")
    assert reply.code == 200 and reply.body["status"] == "SUCCESS", reply
    entries = reply.body["result"]
    assert set(entries[0]) == {"seq", "status", "previous", "status_change", "cause",
                               "task_id", "principal"}
    seqs = [e["seq"] for e in entries]
    assert seqs == sorted(seqs, reverse=True)
    assert len(seqs) == len(events.changes(web)) + 1  # and the first sync's
    assert [(e["previous"], e["status"], e["cause"], e["task_id"], e["principal"])
            for e in entries[:-1]] == list(reversed(events.changes(web)))
    assert (entries[-1]["cause"], entries[-1]["principal"]) == ("sync", None)
    page1 = (await alice.history(web, limit=4)).body["result"]
    page2 = (await alice.history(web, limit=4, before=page1[-1]["seq"])).body["result"]
    page3 = (await alice.history(web, limit=4, before=page2[-1]["seq"])).body["result"]
    assert page1 + page2 + page3 == entries
    hidden = await bob.history("web01.example.com")
    assert (hidden.code, hidden.body) == (404, {"detail": "VM not found"})
    bad = await alice.history("web01.example.com", limit=0)
    assert (bad.code, bad.body["status"], bad.body["result"]) == (
        400, "FAILURE", {"limit": ["Ensure this value is greater than or equal to 1."]})

    cloud.kill("daemon")
    cloud.start_daemon()

    async def answered() -> bool:
        try:
            return (await alice.history("web01.example.com")).code == 200
        except Exception:
            return False

    await wait_for(answered, timeout=30, interval=0.3)
    assert (await alice.history("web01.example.com")).body["result"] == entries


async def test_vmctl_events_prints_a_start_as_it_happens(
    cloud: Cloud, admin: Client, amqp_url_for: Callable[[str], str],
) -> None:
    await boot(cloud, admin)
    env = {**base_env(), "VMD_URL": amqp_url_for("alice")}
    followers = {}
    for name, extra in (("text", ()), ("json", ("--json",))):
        followers[name] = await asyncio.create_subprocess_exec(
            str(BIN / "vmctl"), "events", "--owner", ALICE_OWNER, "--vm", "web01.example.com",
            *extra, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    for proc in followers.values():  # "following ..." on stderr: bound, ready
        assert proc.stderr is not None
        note = await asyncio.wait_for(proc.stderr.readline(), 20)
        assert note.startswith(b"vmctl: following "), note
    try:
        reply = await admin.start("web01.example.com", wait=True)
        assert reply.code == 200, reply
        task_id = reply.body["task_id"]
        text = followers["text"]
        assert text.stdout is not None
        lines = [await asyncio.wait_for(text.stdout.readline(), 20) for _ in range(2)]
        first, second = (line.decode() for line in lines)
        assert "web01.example.com  stopped → starting  cause=task  principal=admin" in first
        assert f"task={task_id}" in first and first.split()[0].endswith("Z")
        assert "starting → running  cause=task  principal=admin" in second
        js = followers["json"]
        assert js.stdout is not None
        record = json.loads(await asyncio.wait_for(js.stdout.readline(), 20))
        assert record["routing_key"] == (
            f"vm.{ALICE_OWNER}.{record['event']['uuid']}.status_change")
        assert (record["event"]["status"], record["event"]["task_id"]) == ("starting", task_id)
    finally:
        for proc in followers.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
    for proc in followers.values():
        _, err = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0 and b"Traceback" not in err, err


async def test_vmctl_events_refused_without_the_owner(amqp_url_for: Callable[[str], str],
                                                     cloud: Cloud, admin: Client) -> None:
    await boot(cloud, admin)
    env = {**base_env(), "VMD_URL": amqp_url_for("alice")}
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "vmctl"), "events", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 3
    assert b"refused binding 'vm.*.*.status_change'" in err and b"--owner" in err, err


async def test_node_online_in_the_first_read_after_its_agents_sync(
    cloud: Cloud, admin: Client,
) -> None:
    uuids = await boot(cloud, admin)
    cloud.kill("agent-node1")

    async def unreachable() -> bool:
        reply = await admin.status("web01.example.com")
        return reply.body.get("result", {}).get("node_status") == "unreachable"

    await wait_for(unreachable, timeout=10)
    cloud.node("node1").vmadm("start", uuids["web01.example.com"], check=True)
    cloud.start_agent(cloud.node("node1"))
    # The first read that shows the sync's news shows the node online: the sync proves it.
    deadline = time.monotonic() + 20
    while True:
        reply = await admin.status("web01.example.com")
        result = reply.body["result"]
        if result["status"] == "running":
            break
        assert time.monotonic() < deadline, result
        await asyncio.sleep(0.05)
    assert result["node_status"] == "online"


async def test_unreachable_after_three_of_the_agents_own_intervals(
    cloud: Cloud, admin: Client,
) -> None:
    # The agent beats every 2 s; the daemon's own setting (0.5 s) would give up after 1.5 s.
    await boot(cloud, admin)
    cloud.kill("agent-node1")

    async def node_status() -> str:
        return str((await admin.status("web01.example.com")).body["result"]["node_status"])

    await wait_for(lambda: _is(node_status(), "unreachable"), timeout=20)
    node = cloud.node("node1")
    path = cloud.agent_config(node)
    path.write_text(path.read_text().replace("heartbeat_interval = 0.5",
                                             "heartbeat_interval = 2"))
    argv = [str(BIN / "vmd"), "agent", "-c", str(path)]
    cloud._spawn("agent-node1", argv, node.env())
    await wait_for(lambda: _is(node_status(), "online"), timeout=20)
    # Two of its beats apart, 2 s each: the daemon's 1.5 s would have lost it in between.
    online_since = time.monotonic()
    while time.monotonic() - online_since < 2.5:
        assert await node_status() == "online"
        await asyncio.sleep(0.1)
    # Frozen (SIGSTOP), the agent sends nothing: the node has 3 x 2 s from its last report.
    os.kill(cloud.procs["agent-node1"].pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        await wait_for(lambda: _is(node_status(), "unreachable"), timeout=20, interval=0.1)
        silent = time.monotonic() - stopped
    finally:
        os.kill(cloud.procs["agent-node1"].pid, signal.SIGCONT)
    # At least 6 s after the last heartbeat, which was at most 2 s before the stop.
    assert 4.0 <= silent < 15.0, silent
    await wait_for(lambda: _is(node_status(), "online"), timeout=20)


async def _is(value: Any, expected: str) -> bool:
    return bool(await value == expected)


async def test_history_through_the_http_gateway(cloud: Cloud, admin: Client,
                                                amqp_url_for: Callable[[str], str]) -> None:
    from e2e.test_gateway import ALICE_KEY, gateway_url, start_gateway

    await boot(cloud, admin)
    assert (await admin.start("web01.example.com", wait=True)).code == 200
    start_gateway(cloud, amqp_url_for("vmd-api"))
    await wait_for(lambda: gateway_url(cloud) is not None or cloud.assert_alive(), timeout=20)
    base = str(gateway_url(cloud)).rstrip("/")
    api = base if base.endswith("/api") else base + "/api"
    headers = {"Authorization": f"Token {ALICE_KEY}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api}/vm/web01.example.com/status/history/?limit=2",
                            headers=headers) as r:
            assert r.status == 200 and "es_task_id" in r.headers
            body = await r.json()
        assert [(e["previous"], e["status"], e["principal"]) for e in body["result"]] == [
            ("starting", "running", "admin"), ("stopped", "starting", "admin")]
        async with http.get(f"{api}/vm/web01.example.com/status/history/?limit=x",
                            headers=headers) as r:
            assert r.status == 400
            assert (await r.json())["result"] == {"limit": ["Enter a whole number."]}
        async with http.get(f"{api}/vm/app01.example.com/status/history/",
                            headers=headers) as r:
            assert (r.status, await r.json()) == (404, {"detail": "VM not found"})
