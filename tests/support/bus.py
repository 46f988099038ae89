"""Publishing one message the way vmd's processes publish it, for tests that play a part.

These were methods and functions of vmd.bus that no product code called: the daemon's commit
pipeline publishes a turn's messages in one confirmed batch (`Bus.publish_many`) and the
agent's reporter batches its reports likewise. A test that stands in for the daemon, an agent
or a responder sends one at a time; these functions build the message with the product's own
builders (`order_message`, `report_message`, `reply_message`, `Event.outgoing`), so what
the test sends is what the product sends.
"""

from __future__ import annotations

from collections.abc import Sequence

from vmd.bus import (
    AgentOrder,
    AgentReport,
    Bus,
    Event,
    order_message,
    reply_message,
    report_message,
)
from vmd.model import Reply


async def send_order(bus: Bus, order: AgentOrder, *, now: float | None = None) -> None:
    """Daemon -> agent, as the bus's user (agents refuse an order without the daemon's).
    `now` (POSIX seconds) sets the clock the order's TTL is computed from."""
    await bus.publish(order_message(order, user_id=bus.settings.user, now=now))


async def send_report(bus: Bus, report: AgentReport) -> None:
    """Agent -> daemon, as the bus's user (the daemon checks it is the node's agent)."""
    await bus.publish(report_message(report, user_id=bus.settings.user))


async def send_reply(bus: Bus, reply_to: str, correlation_id: str | None, reply: Reply, *,
                     timeout: float | None = None) -> None:
    """Answer a request (protocol.md §3), as the daemon does; keep the request's `reply_to`
    and `correlation_id` to send a stream's final reply later."""
    await bus.publish(reply_message(reply_to, correlation_id, reply), timeout=timeout)


async def publish_events(bus: Bus, events: Sequence[Event], *,
                         timeout: float | None = None) -> None:
    """Events to `vmd.events`, in order, all confirmed on return."""
    await bus.publish_many([event.outgoing() for event in events], timeout=timeout)
