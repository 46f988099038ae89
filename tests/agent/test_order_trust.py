"""An agent runs orders from the daemon's broker user only (docs/security.md).

The broker validates `user_id` against the publisher's connection, so it cannot be forged;
whoever else manages to put a message in the node's task queue (a broker administrator, a
leftover binding of an old topology, a misconfigured permission) is not obeyed. Here the
broker's administrator account plays that part: it may publish anywhere.
"""

from __future__ import annotations

import aio_pika

from vmd.bus import codec
from vmd.bus.agent import order_message
from vmd.bus.topology import ORDERS_EXCHANGE

from .conftest import AgentFactory, DaemonSide, Sim, calls, sim_backend

H = "web01.example.com"


def _refused(running: object, reason: str) -> float | None:
    registry = running.agent.metrics.registry  # type: ignore[attr-defined]
    return registry.get_sample_value("vmd_agent_messages_refused_total", {"reason": reason})


async def _publish_as_guest(vhost: str, body: bytes, routing_key: str,
                            user_id: str | None) -> None:
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:5672/{vhost}")
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(ORDERS_EXCHANGE, ensure=False)
        await exchange.publish(aio_pika.Message(body, user_id=user_id, type="task"),
                               routing_key)


async def test_an_order_not_from_the_daemon_user_is_dropped_never_run(
    daemon: DaemonSide, make_agent: AgentFactory, sim: Sim, amqp_vhost: str
) -> None:
    uuid = await sim.create("kvm", "stopped", hostname=H)
    running = await make_agent(sim_backend(sim), sim=sim)
    forged = order_message(daemon.task(uuid, "start", hostname=H))
    task_id = codec.decode_object(forged.body)["task_id"]
    # Without a user_id, and with one of its own: neither is the daemon's.
    await _publish_as_guest(amqp_vhost, forged.body, forged.routing_key, None)
    await _publish_as_guest(amqp_vhost, forged.body, forged.routing_key, "guest")
    # The daemon's next order is taken after them (one queue, in order): the VM never
    # started, nothing of the forged ones reached vmadm, and no result was reported.
    result = await daemon.run(uuid, "current", hostname=H)
    assert result.outcome.state == "stopped"
    assert not [line for line in await calls(sim, uuid) if "start" in line]
    assert _refused(running, "not_daemon") == 2
    assert all(getattr(r.report, "task_id", None) != task_id for r in daemon.received)
