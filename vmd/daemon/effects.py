"""What one decision step returns: the `Effects` the commit pipeline is to carry out.

Every input of the daemon (a request, an agent report, a due deadline, a node-health check,
a housekeeping tick) is decided in one synchronous step that changes the in-memory world
(vmd.fsm) and returns one `Effects` value: rows to write, events and orders to publish
(encoded by vmd.bus when made: `Event`, `agent_task`), replies to send, deliveries to
settle. The step hands it to `Pipeline.submit` before its next await; `submit` is the one
door into the pipeline's current turn (vmd.daemon.turn), so nothing but vmd.daemon.commit
touches a turn, and what a step does can be read (and tested) as a value.

Rows are the world's own records, encoded by `submit` (`Batch.put_*`) in the same step that
made them, so a later change of the same VM cannot leak into them. An `Effects` is empty
until something is added (`bool(fx)` is False then) and is used once.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from vmd.bus import AgentOrder, AgentTask, Delivery, Event, Outgoing, encode, to_json
from vmd.fsm import StatusChange
from vmd.model import Node, Principal, Reply, Task, TaskId, Vm
from vmd.store import IdempotencyKey, IdempotencyRecord, Store


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
    # The reply as published, encoded when the reply is known (`Pipeline.submit`, or after
    # the write for a lookup): an answer that cannot be encoded fails its own request only.
    message: Outgoing | None = None


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


class Effects:
    """What one step decided, in the order the pipeline carries it out (vmd.daemon.commit):
    rows in one store write, then events, orders and replies, then the settlements.

    Each list is made when its first item is added (None until then): one `Effects` is made
    per request, and ten empty lists each time, all tracked by the garbage collector, made
    the collector run ten times as often as before (a full collection every few thousand
    requests). Read the lists (None: nothing of that kind); add through the methods."""

    __slots__ = ("answers", "events", "evicted", "history", "nodes", "orders", "records",
                 "settles", "tasks", "vms")

    def __init__(self) -> None:
        self.vms: list[Vm] | None = None
        self.history: list[tuple[StatusChange, float]] | None = None  # (change, vmd's clock)
        self.tasks: list[Task] | None = None
        self.nodes: list[Node] | None = None
        self.events: list[Event] | None = None
        self.orders: list[AgentOrder] | None = None
        # Idempotency records to store, and keys to delete (evicted past a principal's cap).
        self.records: list[IdempotencyRecord] | None = None
        self.evicted: list[IdempotencyKey] | None = None
        self.answers: list[Answer] | None = None
        self.settles: list[tuple[Delivery, Settle]] | None = None

    def __bool__(self) -> bool:
        return (self.vms is not None or self.history is not None or self.tasks is not None
                or self.nodes is not None or self.events is not None
                or self.orders is not None or self.records is not None
                or self.evicted is not None or self.answers is not None
                or self.settles is not None)

    def put_vm(self, vm: Vm) -> None:
        if self.vms is None:
            self.vms = []
        self.vms.append(vm)

    def put_history(self, change: StatusChange, now: float) -> None:
        if self.history is None:
            self.history = []
        self.history.append((change, now))

    def put_task(self, task: Task) -> None:
        if self.tasks is None:
            self.tasks = []
        self.tasks.append(task)

    def put_nodes(self, nodes: Iterable[Node]) -> None:
        if self.nodes is None:
            self.nodes = []
        self.nodes += nodes

    def event(self, event: Event) -> None:
        if self.events is None:
            self.events = []
        self.events.append(event)

    def order(self, order: AgentOrder) -> None:
        if self.orders is None:
            self.orders = []
        self.orders.append(order)

    def record(self, record: IdempotencyRecord) -> None:
        if self.records is None:
            self.records = []
        self.records.append(record)

    def evict(self, key: IdempotencyKey) -> None:
        if self.evicted is None:
            self.evicted = []
        self.evicted.append(key)

    def answer(self, answer: Answer) -> None:
        if self.answers is None:
            self.answers = []
        self.answers.append(answer)

    def settle(self, delivery: Delivery, how: Settle = Settle.ACK) -> None:
        if self.settles is None:
            self.settles = []
        self.settles.append((delivery, how))
