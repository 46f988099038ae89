"""The internal agent protocol: one typed definition of every message daemon and agents swap.

The daemon and the node agents are separate processes (often separate machines), so their
messages are JSON with explicit validation, never serialized Python objects; this module is the one
place that says what each message holds, shared by both sides. docs/bus.md has the schemas.

Every body is a JSON object with `"v": 1` and a `"kind"`:

    daemon -> agent (queue vmd.agent.tasks.<node>):  task, sync_request
    agent -> daemon (queue vmd.agent.reports):       result, observations, heartbeat, sync, isos

A `task` that comes back on the reports queue was dead-lettered by the broker (its TTL, the
time to its deadline, ran out before an agent took it, or an agent rejected it): it decodes as
`TaskUndelivered` (see `vmd.bus.agent`). Times are POSIX seconds (float) of the sender's clock.

Decoding raises `ProtocolError` with a one-line reason (a malformed internal message is a
bug to look at, not to retry): the daemon dead-letters such a report to `vmd.dead` with that
reason; an agent rejects such an order (its task queue dead-letters it to the daemon, which
puts it in `vmd.dead`: an agent may not publish there). Decoding says nothing about trust:
the receivers check every message's `user_id` (docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vmd.model import (
    Action,
    JsonObject,
    NodeName,
    Observation,
    OutcomeKind,
    TaskId,
    TaskOutcome,
    VmUuid,
)

VERSION = 1


class ProtocolError(ValueError):
    """An agent-protocol message that does not match its schema."""


# -- the messages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentTask:
    """Run `action` for a VM before `deadline` (daemon -> agent)."""

    task_id: TaskId
    uuid: VmUuid
    hostname: str
    node: NodeName
    action: Action
    params: JsonObject
    created: float
    deadline: float

    def ttl_ms(self, now: float) -> int:
        """Milliseconds left until the deadline (0 when past): the message's TTL."""
        return max(0, int((self.deadline - now) * 1000))


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """Send a full sync now (daemon -> agent): after a daemon takeover, or an admin re-sync."""

    node: NodeName
    reason: str


@dataclass(frozen=True, slots=True)
class TaskResult:
    """A task's vmadm command(s) finished (agent -> daemon); `outcome` says how."""

    task_id: TaskId
    uuid: VmUuid
    node: NodeName
    action: Action
    outcome: TaskOutcome
    time: float


@dataclass(frozen=True, slots=True)
class ObservationReport:
    """VM state changes seen on a node, in the order seen (agent -> daemon)."""

    node: NodeName
    time: float
    observations: tuple[Observation, ...]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The agent is alive; `started` changes when the agent restarts (agent -> daemon)."""

    node: NodeName
    time: float
    interval: float
    started: float


@dataclass(frozen=True, slots=True)
class FullSync:
    """Every VM on the node, and its ISO images; a VM missing here is gone (agent -> daemon)."""

    node: NodeName
    time: float
    vms: tuple[Observation, ...]
    isos: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IsoList:
    """The ISO images available on the node changed (agent -> daemon)."""

    node: NodeName
    time: float
    isos: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TaskUndelivered:
    """A task the broker dead-lettered back: `reason` is RabbitMQ's (`expired`, `rejected`,
    `maxlen`). The task never ran (agent down, or it refused it)."""

    task: AgentTask
    reason: str


AgentOrder = AgentTask | SyncRequest
AgentReport = TaskResult | ObservationReport | Heartbeat | FullSync | IsoList | TaskUndelivered


# -- encoding -------------------------------------------------------------------------------


def _observation_json(obs: Observation) -> JsonObject:
    return {"uuid": obs.uuid, "state": obs.state, "change_time": obs.change_time, "vm": obs.vm}


def to_json(message: AgentOrder | AgentReport) -> JsonObject:
    """The JSON object of a message (TaskUndelivered is made by the broker, not sent)."""
    head: JsonObject = {"v": VERSION}
    match message:
        case AgentTask():
            return head | {
                "kind": "task",
                "task_id": message.task_id,
                "uuid": message.uuid,
                "hostname": message.hostname,
                "node": message.node,
                "action": message.action.value,
                "params": message.params,
                "created": message.created,
                "deadline": message.deadline,
            }
        case SyncRequest():
            return head | {"kind": "sync_request", "node": message.node, "reason": message.reason}
        case TaskResult():
            o = message.outcome
            return head | {
                "kind": "result",
                "task_id": message.task_id,
                "uuid": message.uuid,
                "node": message.node,
                "action": message.action.value,
                "outcome": {
                    "kind": o.kind.value,
                    "returncode": o.returncode,
                    "message": o.message,
                    "state": o.state,
                    "change_time": o.change_time,
                    "definition": o.definition,
                },
                "time": message.time,
            }
        case ObservationReport():
            return head | {
                "kind": "observations",
                "node": message.node,
                "time": message.time,
                "observations": [_observation_json(o) for o in message.observations],
            }
        case Heartbeat():
            return head | {
                "kind": "heartbeat",
                "node": message.node,
                "time": message.time,
                "interval": message.interval,
                "started": message.started,
            }
        case FullSync():
            return head | {
                "kind": "sync",
                "node": message.node,
                "time": message.time,
                "vms": [_observation_json(o) for o in message.vms],
                "isos": list(message.isos),
            }
        case IsoList():
            return head | {
                "kind": "isos",
                "node": message.node,
                "time": message.time,
                "isos": list(message.isos),
            }
        case TaskUndelivered():
            raise TypeError("TaskUndelivered is produced by the broker, not sent")


# -- decoding -------------------------------------------------------------------------------


class _Fields:
    """Typed access to one message's fields, with one-line errors naming kind and field."""

    def __init__(self, value: JsonObject, kind: str) -> None:
        self._value = value
        self._kind = kind

    def _bad(self, key: str, what: str) -> ProtocolError:
        return ProtocolError(f"{self._kind} message: {key!r} must be {what}")

    def text(self, key: str, *, empty: bool = False) -> str:
        v = self._value.get(key)
        if not isinstance(v, str) or not (v or empty):
            raise self._bad(key, "a string" if empty else "a non-empty string")
        return v

    def opt_text(self, key: str) -> str | None:
        v = self._value.get(key)
        if v is not None and not isinstance(v, str):
            raise self._bad(key, "a string or null")
        return v

    def number(self, key: str) -> float:
        v = self._value.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self._bad(key, "a number")
        return float(v)

    def opt_number(self, key: str) -> float | None:
        return None if self._value.get(key) is None else self.number(key)

    def integer(self, key: str) -> int:
        v = self._value.get(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self._bad(key, "an integer")
        return v

    def obj(self, key: str) -> JsonObject:
        v = self._value.get(key)
        if not isinstance(v, dict):
            raise self._bad(key, "an object")
        return v

    def opt_obj(self, key: str) -> JsonObject | None:
        v = self._value.get(key)
        if v is not None and not isinstance(v, dict):
            raise self._bad(key, "an object or null")
        return v

    def array(self, key: str) -> list[Any]:
        v = self._value.get(key)
        if not isinstance(v, list):
            raise self._bad(key, "a list")
        return v

    def strings(self, key: str) -> tuple[str, ...]:
        items = self.array(key)
        if not all(isinstance(i, str) for i in items):
            raise self._bad(key, "a list of strings")
        return tuple(items)

    def action(self, key: str) -> Action:
        v = self.text(key)
        try:
            return Action(v)
        except ValueError:
            raise self._bad(key, f"one of {', '.join(a.value for a in Action)}") from None

    def observations(self, key: str, node: NodeName) -> tuple[Observation, ...]:
        out = []
        for item in self.array(key):
            if not isinstance(item, dict):
                raise self._bad(key, "a list of objects")
            f = _Fields(item, f"{self._kind} {key}[]")
            out.append(
                Observation(
                    uuid=VmUuid(f.text("uuid")),
                    node=node,
                    state=f.opt_text("state"),
                    change_time=f.number("change_time"),
                    vm=f.opt_obj("vm"),
                )
            )
        return tuple(out)


def _fields(value: JsonObject) -> tuple[str, _Fields]:
    kind = value.get("kind")
    if not isinstance(kind, str):
        raise ProtocolError("agent message without a 'kind'")
    if value.get("v") != VERSION:
        raise ProtocolError(f"{kind} message: unsupported version {value.get('v')!r}")
    return kind, _Fields(value, kind)


def task_from_json(value: JsonObject) -> AgentTask:
    kind, f = _fields(value)
    if kind != "task":
        raise ProtocolError(f"expected a task message, got {kind!r}")
    return AgentTask(
        task_id=TaskId(f.text("task_id")),
        uuid=VmUuid(f.text("uuid")),
        hostname=f.text("hostname"),
        node=NodeName(f.text("node")),
        action=f.action("action"),
        params=f.obj("params"),
        created=f.number("created"),
        deadline=f.number("deadline"),
    )


def order_from_json(value: JsonObject) -> AgentOrder:
    kind, f = _fields(value)
    if kind == "task":
        return task_from_json(value)
    if kind == "sync_request":
        return SyncRequest(node=NodeName(f.text("node")), reason=f.text("reason"))
    raise ProtocolError(f"unknown order kind {kind!r}")


def _outcome(f: _Fields) -> TaskOutcome:
    raw = f.obj("outcome")
    o = _Fields(raw, "result outcome")
    try:
        kind = OutcomeKind(o.text("kind"))
    except ValueError:
        raise ProtocolError(
            f"result outcome: 'kind' must be one of {', '.join(k.value for k in OutcomeKind)}"
        ) from None
    return TaskOutcome(
        kind=kind,
        returncode=o.integer("returncode"),
        message=o.text("message", empty=True),
        state=o.opt_text("state"),
        change_time=o.opt_number("change_time"),
        definition=o.opt_obj("definition"),
    )


_REPORT_KINDS = frozenset({"result", "observations", "heartbeat", "sync", "isos"})


def report_from_json(value: JsonObject) -> AgentReport:
    """A report as sent by an agent (a dead-lettered task is handled by `vmd.bus.agent`)."""
    kind, f = _fields(value)
    if kind not in _REPORT_KINDS:
        raise ProtocolError(f"unknown report kind {kind!r}")
    if kind == "result":
        return TaskResult(
            task_id=TaskId(f.text("task_id")),
            uuid=VmUuid(f.text("uuid")),
            node=NodeName(f.text("node")),
            action=f.action("action"),
            outcome=_outcome(f),
            time=f.number("time"),
        )
    node = NodeName(f.text("node"))
    if kind == "observations":
        return ObservationReport(
            node=node, time=f.number("time"), observations=f.observations("observations", node)
        )
    if kind == "heartbeat":
        return Heartbeat(
            node=node,
            time=f.number("time"),
            interval=f.number("interval"),
            started=f.number("started"),
        )
    if kind == "sync":
        return FullSync(
            node=node,
            time=f.number("time"),
            vms=f.observations("vms", node),
            isos=f.strings("isos"),
        )
    return IsoList(node=node, time=f.number("time"), isos=f.strings("isos"))
