"""The internal agent protocol: one typed definition of every message daemon and agents swap.

The daemon and the node agents are separate processes (often separate machines), so their
messages are JSON with explicit validation, never serialized Python objects; this module is the one
place that says what each message holds, shared by both sides. docs/bus.md has the schemas.

Every body is a JSON object with `"v": 1` and a `"kind"`:

    daemon -> agent (queue vmd.agent.tasks.<node>):  task, sync_request
    agent -> daemon (queue vmd.agent.reports):       result, results, observations, heartbeat,
                                                     sync, isos

A result carries the observations of its VM the agent's watch made while the task ran (its
own task's change), so a command costs one report, not a result and an observation; several
results waiting together travel as one `results` message. Both are additions a daemon of this
version accepts beside the older agent's plain `result` (docs/bus.md, rolling upgrades).

A `task` that comes back on the reports queue was dead-lettered by the broker (its TTL, the
time to its deadline, ran out before an agent took it, or an agent rejected it): it decodes as
`TaskUndelivered` (see `vmd.bus.agent`). Times are POSIX seconds (float) of the sender's clock.

Decoding raises `ProtocolError` with a one-line reason (a malformed internal message is a
bug to look at, not to retry): the daemon dead-letters such a report to `vmd.dead` with that
reason, but refuses a value it could not keep (a NUL, an over-long string, a VM uuid not
of vmadm's shape; vmd.bus.agent_fields) as it refuses a report its sender may not send: an
item holding one (an observation, a VM of a sync, a result of a batch) is left out (the
message's `left_out`, decoded only), in the message's own fields it is `RefusedValue`. An
agent rejects any bad order (its task queue dead-letters it to the daemon, which puts it in
`vmd.dead`: an agent may not publish there). Decoding says
nothing about trust: the receivers check every message's `user_id` (docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from vmd.bus.agent_fields import Fields, LeftOut, ProtocolError, RefusedValue
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

# Defined with the field checks, raised for every message here.
__all__ = ["LeftOut", "ProtocolError", "RefusedValue"]

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
    """A task's vmadm command(s) finished (agent -> daemon); `outcome` says how.

    `observations`: what the agent's watch saw of this VM while the task ran (its own
    change, in the order seen), carried here instead of in an `ObservationReport`: the daemon
    applies them, then the outcome, in one turn. Empty from an agent of the version before.
    `left_out` (decoded only, never sent): carried observations the decoder left out.
    """

    task_id: TaskId
    uuid: VmUuid
    node: NodeName
    action: Action
    outcome: TaskOutcome
    time: float
    observations: tuple[Observation, ...] = ()
    left_out: tuple[LeftOut, ...] = ()


@dataclass(frozen=True, slots=True)
class ResultBatch:
    """Task results of one node that waited together, in order (agent -> daemon);
    `left_out` (decoded only): results left out for a value of their own."""

    node: NodeName
    time: float
    results: tuple[TaskResult, ...]
    left_out: tuple[LeftOut, ...] = ()


@dataclass(frozen=True, slots=True)
class ObservationReport:
    """VM state changes seen on a node, in the order seen (agent -> daemon); `left_out`
    (decoded only): the observations the decoder left out."""

    node: NodeName
    time: float
    observations: tuple[Observation, ...]
    left_out: tuple[LeftOut, ...] = ()


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The agent is alive; `started` changes when the agent restarts (agent -> daemon)."""

    node: NodeName
    time: float
    interval: float
    started: float


@dataclass(frozen=True, slots=True)
class FullSync:
    """Every VM on the node, and its ISO images; a VM missing here is gone (agent -> daemon),
    but for those the decoder left out (`left_out`, decoded only, never sent): `kept`."""

    node: NodeName
    time: float
    vms: tuple[Observation, ...]
    isos: tuple[str, ...]
    left_out: tuple[LeftOut, ...] = ()

    @property
    def kept(self) -> frozenset[VmUuid]:
        """The VMs left out whose uuid is valid: on the node, but not read from this sync."""
        return frozenset(x.uuid for x in self.left_out if x.uuid is not None)


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
AgentReport = (TaskResult | ResultBatch | ObservationReport | Heartbeat | FullSync | IsoList
               | TaskUndelivered)


# -- encoding -------------------------------------------------------------------------------


def _observation_json(obs: Observation) -> JsonObject:
    return {"uuid": obs.uuid, "state": obs.state, "change_time": obs.change_time, "vm": obs.vm}


def _result_json(r: TaskResult) -> JsonObject:
    """A result's fields but `v`, `kind` and `node` (the message's)."""
    o = r.outcome
    value: JsonObject = {
        "task_id": r.task_id,
        "uuid": r.uuid,
        "action": r.action.value,
        "outcome": {
            "kind": o.kind.value,
            "returncode": o.returncode,
            "message": o.message,
            "state": o.state,
            "change_time": o.change_time,
            "definition": o.definition,
        },
        "time": r.time,
    }
    if r.observations:  # absent otherwise: the result as the version before sent it
        value["observations"] = [_observation_json(obs) for obs in r.observations]
    return value


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
            return head | {"kind": "result", "node": message.node} | _result_json(message)
        case ResultBatch():
            return head | {
                "kind": "results",
                "node": message.node,
                "time": message.time,
                "results": [_result_json(r) for r in message.results],
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


def _fields(value: JsonObject) -> tuple[str, Fields]:
    kind = value.get("kind")
    if not isinstance(kind, str):
        raise ProtocolError("agent message without a 'kind'")
    if value.get("v") != VERSION:
        raise ProtocolError(f"{kind} message: unsupported version {value.get('v')!r}")
    return kind, Fields(value, kind)


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


def _outcome(f: Fields) -> TaskOutcome:
    raw = f.obj("outcome")
    o = Fields(raw, "result outcome")
    try:
        kind = OutcomeKind(o.text("kind"))
    except ValueError:
        raise ProtocolError(
            f"result outcome: 'kind' must be one of {', '.join(k.value for k in OutcomeKind)}"
        ) from None
    return TaskOutcome(
        kind=kind,
        returncode=o.integer("returncode"),
        message=o.text("message", empty=True, limit=None),
        state=o.opt_text("state"),
        change_time=o.opt_number("change_time"),
        definition=o.vm_object("definition"),
    )


def _result(f: Fields, node: NodeName) -> TaskResult:
    uuid = f.vm_uuid("uuid")
    carried, left = f.observations("observations", node) if f.has("observations") else ((), ())
    if any(o.uuid != uuid for o in carried) or any(x.uuid not in (None, uuid) for x in left):
        raise ProtocolError("result message: 'observations' must be of the result's VM")
    return TaskResult(
        task_id=TaskId(f.text("task_id")),
        uuid=uuid,
        node=node,
        action=f.action("action"),
        outcome=_outcome(f),
        time=f.number("time"),
        observations=carried,
        left_out=left,
    )


def _results(f: Fields, node: NodeName) -> ResultBatch:
    """A result with a value of its own the daemon could not keep is left out, the others
    are applied (results of other tasks are independent)."""
    items = f.array("results")
    if not items or not all(isinstance(i, dict) for i in items):
        raise ProtocolError("results message: 'results' must be a non-empty list of objects")
    kept, left = [], []
    for item in items:
        r = Fields(item, "results results[]")
        try:
            kept.append(_result(r, node))
        except RefusedValue as exc:
            left.append(LeftOut(r.valid_uuid(), str(exc)))
    return ResultBatch(node, f.number("time"), tuple(kept), tuple(left))


_REPORT_KINDS = frozenset({"result", "results", "observations", "heartbeat", "sync", "isos"})


def report_from_json(value: JsonObject) -> AgentReport:
    """A report as sent by an agent (a dead-lettered task is handled by `vmd.bus.agent`)."""
    kind, f = _fields(value)
    if kind not in _REPORT_KINDS:
        raise ProtocolError(f"unknown report kind {kind!r}")
    node = NodeName(f.text("node"))
    if kind == "result":
        return _result(f, node)
    if kind == "results":
        return _results(f, node)
    if kind == "observations":
        observations, left = f.observations("observations", node)
        return ObservationReport(node, f.number("time"), observations, left)
    if kind == "heartbeat":
        return Heartbeat(
            node=node,
            time=f.number("time"),
            interval=f.number("interval"),
            started=f.number("started"),
        )
    if kind == "sync":
        vms, left = f.observations("vms", node)
        return FullSync(node, f.number("time"), vms, f.strings("isos"), left)
    return IsoList(node=node, time=f.number("time"), isos=f.strings("isos"))
