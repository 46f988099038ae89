"""Only a node's own agent speaks for its node (docs/security.md), through the real broker.

Each test forges one kind of agent message the way a broker user allowed on the vhost could:
another node's agent (vmd-agent-node2, which may publish reports), the daemon's own user,
or the node's real agent lying about a task. The daemon drops each one (acked), counts it in
`vmd_agent_messages_refused_total{reason}` and changes nothing; the genuine messages that
follow still apply.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import aio_pika
import pytest
from support.amqp import agent_user
from support.bus import send_report

from vmd.bus import (
    Bus,
    BusSettings,
    FullSync,
    ObservationReport,
    TaskResult,
    agent_topology,
)
from vmd.bus.agent import order_message
from vmd.bus.topology import AGENT_EXCHANGE, REPORT_ROUTING_KEY
from vmd.daemon import Daemon
from vmd.model import NodeName, Observation, OutcomeKind, TaskOutcome, TaskState, VmStatus

from .conftest import Cloud
from .harness import eventually

NODE1 = NodeName("node1")


def refused(daemon: Daemon, reason: str) -> float:
    value = daemon.metrics.registry.get_sample_value(
        "vmd_agent_messages_refused_total", {"reason": reason})
    return value or 0.0


@pytest.fixture
async def as_user(bus_settings: Callable[..., BusSettings]) -> AsyncIterator[Callable[..., Bus]]:
    """A started bus as a broker user (reports it sends carry that user as `user_id`)."""
    buses: list[Bus] = []

    async def make(user: str, node: str = "node2") -> Bus:
        bus = Bus(bus_settings(user), topology=agent_topology(node))
        buses.append(bus)
        await bus.start()
        return bus

    yield make  # type: ignore[misc]
    for bus in reversed(buses):
        await bus.close(drain_timeout=0.5)


def statuses(cloud: Cloud) -> dict[str, VmStatus]:
    return {vm.hostname: vm.status for vm in cloud.daemon.world.vms}


def observation(cloud: Cloud, hostname: str, state: str | None) -> Observation:
    vm = cloud.vm(hostname)
    return Observation(vm.uuid, NODE1, state, time.time(), None)


async def test_a_full_sync_for_a_node_its_sender_does_not_serve_is_refused(
    cloud: Cloud, as_user: Callable[..., Bus]
) -> None:
    before = statuses(cloud)
    other = await as_user(agent_user("node2"))
    # An empty listing of node1 would make every VM of node1 `notcreated`.
    await send_report(other, FullSync(NODE1, time.time(), (), ()))
    await eventually(lambda: refused(cloud.daemon, "wrong_node") == 1, what="the refusal")
    assert statuses(cloud) == before


async def test_observations_for_a_node_its_sender_does_not_serve_are_refused(
    cloud: Cloud, as_user: Callable[..., Bus]
) -> None:
    other = await as_user(agent_user("node2"))
    stopped = observation(cloud, "web01.example.com", "stopped")
    await send_report(other, ObservationReport(NODE1, time.time(), (stopped,)))
    await eventually(lambda: refused(cloud.daemon, "wrong_node") == 1, what="the refusal")
    assert cloud.vm("web01.example.com").status is VmStatus.RUNNING
    # The node's own agent is believed.
    await cloud.agent.observe(cloud.agent.vms[cloud.vm("web01.example.com").uuid], "stopped")
    await eventually(lambda: cloud.vm("web01.example.com").status is VmStatus.STOPPED)


async def test_reports_from_a_user_that_is_no_agent_are_refused(
    cloud: Cloud, as_user: Callable[..., Bus]
) -> None:
    daemon_user = await as_user("vmd")  # may publish on the vhost, but is no node's agent
    stopped = observation(cloud, "web01.example.com", "stopped")
    await send_report(daemon_user, ObservationReport(NODE1, time.time(), (stopped,)))
    await eventually(lambda: refused(cloud.daemon, "unknown_sender") == 1, what="the refusal")
    assert cloud.vm("web01.example.com").status is VmStatus.RUNNING


async def test_a_result_from_another_node_or_for_another_vm_is_refused(
    cloud: Cloud, as_user: Callable[..., Bus]
) -> None:
    reply = await cloud.call("alice", "PUT", "/vm/web02.example.com/status/start")
    assert reply.code == 201, reply
    task = await cloud.agent.next_task()
    ok = TaskOutcome(OutcomeKind.SUCCESS, 0, "Successfully started VM web02.example.com",
                     state="running", change_time=time.time())
    other = await as_user(agent_user("node2"))
    # node2's agent: as itself (the task was sent to node1), and speaking for node1.
    await send_report(other, TaskResult(task.task_id, task.uuid, NodeName("node2"),
                                        task.action, ok, time.time()))
    await send_report(other, TaskResult(task.task_id, task.uuid, NODE1, task.action, ok,
                                        time.time()))
    # node1's own agent, but naming another VM than the task's.
    web01 = cloud.vm("web01.example.com").uuid
    await send_report(cloud.agent.bus, TaskResult(task.task_id, web01, NODE1, task.action, ok,
                                                  time.time()))
    await eventually(lambda: refused(cloud.daemon, "wrong_task") == 2, what="the refusals")
    assert refused(cloud.daemon, "wrong_node") == 1
    record = cloud.daemon.world.tasks.get(task.task_id)
    assert record is not None and record.state is TaskState.PENDING
    assert cloud.vm("web02.example.com").status is VmStatus.STARTING
    await cloud.agent.result(task, state="running")
    await eventually(lambda: cloud.vm("web02.example.com").status is VmStatus.RUNNING)


async def test_a_forged_dead_lettered_task_is_refused(cloud: Cloud, amqp_url_for: Callable[
        [str], str]) -> None:
    reply = await cloud.call("alice", "PUT", "/vm/web02.example.com/status/start")
    assert reply.code == 201, reply
    task = await cloud.agent.next_task()
    # The node's agent sends the task back with the headers of a broker dead-lettering:
    # believed, it would end the task at once as expired.
    forged = order_message(task)
    headers = {"x-first-death-reason": "expired", "x-death": [
        {"reason": "expired", "queue": "vmd.agent.tasks.node1", "count": 1}]}
    user = agent_user("node1")
    connection = await aio_pika.connect(amqp_url_for(user))
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(AGENT_EXCHANGE, ensure=False)
        await exchange.publish(aio_pika.Message(forged.body, user_id=user, headers=headers,
                                                type="task"), REPORT_ROUTING_KEY)
    await eventually(lambda: refused(cloud.daemon, "not_daemon") == 1, what="the refusal")
    record = cloud.daemon.world.tasks.get(task.task_id)
    assert record is not None and record.state is TaskState.PENDING
    assert cloud.vm("web02.example.com").status is VmStatus.STARTING
