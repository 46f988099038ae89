"""What one turn of the commit pipeline holds: the effects of the decisions taken since the
previous turn, in the order they were made (vmd.daemon.commit carries them out).

The decision step fills the current `Turn` synchronously (vmd.daemon.core, the intake, the
report handler): rows in its `Batch`, events, orders to agents (`agent_task`, encoded when
made), `Answer`s to send and how each delivery is to be settled (`Settle`). Nothing here does
I/O; the pipeline's write and publish stages are the only readers.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vmd.bus import AgentOrder, AgentTask, Delivery, Event, Outgoing, encode, to_json
from vmd.model import Principal, Reply, Task, TaskId
from vmd.store import Batch, Store


class Settle(enum.Enum):
    """How a delivery is settled once the turn that answers it is published."""

    ACK = "ack"  # done: ack once the turn is published
    HOLD = "hold"  # not done (shutting down): keep unsettled until the runner requeues it


@dataclass(slots=True)
class Answer:
    """One reply to send. `delivery` is the request it answers (None for the final reply of
    stream mode); `reply` None means: read task `lookup` (or run `read`) from the store after
    the write."""

    reply_to: str
    correlation_id: str | None
    reply: Reply | None
    delivery: Delivery | None = None
    kind: str | None = None  # for the request metrics; None = not counted (final replies)
    started: float = 0.0  # time.perf_counter() when the request was received
    lookup: TaskId | None = None
    principal: Principal | None = None
    # Or: a read that makes the reply from the store, run after the write (the power
    # history, vmd.daemon.history).
    read: Callable[[Store], Reply] | None = None
    # The reply as published, encoded when the reply is known (`Pipeline.answer`, or after
    # the write for a lookup): an answer that cannot be encoded fails its own request only.
    message: Outgoing | None = None


@dataclass(slots=True)
class Turn:
    """The effects of the decisions since the previous turn, in the order they were made."""

    batch: Batch = field(default_factory=Batch)
    events: list[Event] = field(default_factory=list)
    orders: list[AgentOrder] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    settles: list[tuple[Delivery, Settle]] = field(default_factory=list)
    # Requests whose answer could not be encoded: dead-lettered with this reason, not acked.
    failed: dict[Delivery, str] = field(default_factory=dict)
    lookups: list[Answer] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    # Set by the write stage: the events as published, and the turn's outbox id range.
    outgoing: list[Outgoing] = field(default_factory=list)
    outbox: tuple[int, int] | None = None


def agent_task(task: Task, hostname: str, params: dict[str, Any]) -> AgentTask:
    """The order that sends `task` to its node's agent (`params` without daemon-only keys).

    Encoded once here, in the decision step that made it: an order that cannot be encoded
    raises `EncodeError` for its request, instead of failing the whole turn when the write
    stage stores it."""
    order = AgentTask(
        task_id=task.task_id,
        uuid=task.vm_uuid,
        hostname=hostname,
        node=task.node,
        action=task.action,
        params=params,
        created=task.created,
        deadline=task.deadline,
    )
    encode(to_json(order))
    return order
