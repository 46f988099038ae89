"""The daemon's broker connection cut mid-command (tests/support/proxy.py): every request gets
one answer (repeats, if any, are identical), no state change is lost, nothing runs twice."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from support.proxy import TcpProxy

from vmd.model import VmStatus

from .conftest import StartDaemon, seed
from .harness import EventLog, FakeAgent, RawRequester, eventually

N = 40


async def test_connection_cut_mid_command(
    amqp_proxy: TcpProxy, start_daemon: StartDaemon,
    make_agent: Callable[..., Awaitable[FakeAgent]], raw: Callable[..., Any], amqp_vhost: str,
    events: EventLog,
) -> None:
    # amqp_proxy first: it must outlive the daemon (fixtures end in reverse order).
    daemon = await start_daemon(url=amqp_proxy.url("vmd", "vmd", amqp_vhost), prefetch=16)
    agent = await make_agent("node1")  # direct: only the daemon's connection is cut
    for n in range(100, 100 + N):
        agent.add(n, f"s{n}.example.com", state="stopped")
    await seed(daemon, agent)
    requester: RawRequester = await raw("alice")
    cids = []
    for i, n in enumerate(range(100, 100 + N)):
        body = {"method": "PUT", "path": f"/vm/s{n}.example.com/status/start"}
        # Half with a message_id (idempotency record), half without (redelivery memo).
        cids.append(await requester.send(body, message_id=f"cut-{n}" if i % 2 else None))
    await eventually(lambda: len(requester.replies) >= 5, what="the first replies")
    assert amqp_proxy.cut() >= 1
    await eventually(lambda: all(requester.replies.get(c) for c in cids), 30, "every answer")
    await asyncio.sleep(0.5)  # late duplicates, if any, arrive now
    task_ids = set()
    for cid in cids:
        replies = requester.replies[cid]
        assert all(r == replies[0] for r in replies), replies  # one answer, maybe repeated
        code, body = replies[0]
        assert code == 201, body
        task_ids.add(body["task_id"])
    assert len(task_ids) == N  # one task per VM: no start ran twice
    sent: dict[str, set[str]] = defaultdict(set)
    while not agent.tasks.empty():
        task = agent.tasks.get_nowait()
        sent[task.uuid].add(task.task_id)
    await eventually(lambda: daemon.bus.reconnects >= 1, what="the reconnect")
    for n in range(100, 100 + N):
        vm = daemon.world.vms.by_hostname[f"s{n}.example.com"]
        assert vm.status is VmStatus.STARTING
        assert vm.task_id in task_ids
        starting = [e for e in events.status_changes(vm.uuid) if e["status"] == "starting"]
        await events.wait(lambda _, v=vm: [e for e in events.status_changes(v.uuid)
                                           if e["status"] == "starting"])
        starting = [e for e in events.status_changes(vm.uuid) if e["status"] == "starting"]
        assert {e["seq"] for e in starting} == {vm.seq}  # published (repeats carry one seq)
    await eventually(lambda: len(sent) == N or _drain(agent, sent), 10, "every task sent")
    assert all(len(ids) == 1 for ids in sent.values()), sent
    await eventually(lambda: daemon.metrics.broker_reconnects._value.get() >= 1)


def _drain(agent: FakeAgent, sent: dict[str, set[str]]) -> bool:
    while not agent.tasks.empty():
        task = agent.tasks.get_nowait()
        sent[task.uuid].add(task.task_id)
    return len(sent) == N
