"""Node health rules: liveness from what the agents say, maintenance, ISO lists (pure).

Any report from a node's agent (a heartbeat, a full sync, observations, a task result)
proves the node online: an `unreachable` node becomes `online` at its agent's first report,
so the first status a client reads after an agent's (re)connect and full sync says
`online` next to that sync's data. Silent for 3 x the interval its own heartbeats announce
(`interval` of each heartbeat, kept between `MIN_INTERVAL` and `MAX_INTERVAL`; `[daemon]
heartbeat_interval` for a node not heard from yet, e.g. after a daemon restart), a node
becomes `unreachable` (its VMs' commands answer 423 `Node is not operational`). Back
online by any report other than a full sync, a full sync is asked of its agent, so that
everything that happened while vmd could not hear the node, and every re-sync that waited
for it, converges at once; back by a full sync, that sync is it.

Maintenance is set by an admin in the configuration (`[daemon] maintenance = ["node07"]`,
then a restart): such a node is `maintenance` whatever its heartbeats say; removed from the
list it is `unreachable` until its next heartbeat.

Like the rest of vmd.fsm, `NodeHealth` changes the in-memory nodes at once and returns what
the I/O edge must do (a `NodeDecision`: nodes to store, `node.<node>.status` events, full
syncs to ask); vmd.daemon.nodes feeds it the inputs and submits the effects. Heartbeat
times are vmd's own clock at receipt (not the agent's), so clock skew between hosts cannot
mark a node dead; heartbeats alone are not stored (a restarted daemon gives every node a
full timeout).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from vmd.fsm.render import iso_time
from vmd.model import JsonObject, Node, NodeName, NodeStatus

ONLINE, UNREACHABLE, MAINTENANCE = NodeStatus.ONLINE, NodeStatus.UNREACHABLE, NodeStatus.MAINTENANCE
# Bounds on the heartbeat interval an agent announces (seconds): below the lower one the
# monitor's own tick would decide, above the upper one a dead node would go unnoticed.
MIN_INTERVAL = 0.1
MAX_INTERVAL = 600.0


def node_routing_key(node: str) -> str:
    return f"node.{node}.status"


@dataclass(slots=True, frozen=True)
class NodeChange:
    """One node status change (protocol.md §9 `node.<node>.status` event)."""

    node: NodeName
    previous: NodeStatus
    status: NodeStatus
    time: float

    def event(self) -> JsonObject:
        """The event's body."""
        return {"node": self.node, "status": self.status.value,
                "previous": self.previous.value, "time": iso_time(self.time)}


@dataclass(slots=True)
class NodeDecision:
    """What a node-health input did (in memory) and what the I/O edge must now do."""

    stored: list[Node] = field(default_factory=list)  # to store (added, status, ISOs)
    # Named for the first time, with the status it was added in (before any change).
    added: list[tuple[NodeName, NodeStatus]] = field(default_factory=list)
    changes: list[NodeChange] = field(default_factory=list)  # each one event
    syncs: list[tuple[NodeName, str]] = field(default_factory=list)  # (node, reason)

    def __bool__(self) -> bool:
        return bool(self.stored or self.syncs)


class NodeHealth:
    """Every node vmd knows (the `World`'s `nodes` mapping) and the rules that change them."""

    def __init__(self, nodes: dict[NodeName, Node], *, heartbeat_interval: float,
                 maintenance: frozenset[str]) -> None:
        self.nodes = nodes
        self.maintenance = maintenance
        self.timeout = 3 * heartbeat_interval  # for nodes not heard from yet
        # Each node's timeout: 3 x the interval its last heartbeat announced.
        self.timeouts: dict[NodeName, float] = {}

    def restore(self, now: float) -> NodeDecision:
        """After loading the store: every node gets a full heartbeat timeout from now, and
        the `[daemon] maintenance` list is applied."""
        d = NodeDecision()
        for node in self.nodes.values():
            node.last_heartbeat = now
            if node.name in self.maintenance:
                self._set_status(node, MAINTENANCE, now, d)
            elif node.status is MAINTENANCE:
                self._set_status(node, UNREACHABLE, now, d)  # online at its next heartbeat
        for name in sorted(self.maintenance):
            self._ensure(NodeName(name), d)
        return d

    def ensure(self, name: NodeName) -> NodeDecision:
        """The node is named (in a report): added, unreachable or in maintenance, the first
        time."""
        d = NodeDecision()
        self._ensure(name, d)
        return d

    def heartbeat(self, name: NodeName, now: float, interval: float | None = None
                  ) -> NodeDecision:
        """A heartbeat: the node is alive, and beats every `interval` seconds."""
        if interval is not None:
            self.timeouts[name] = 3 * min(MAX_INTERVAL, max(MIN_INTERVAL, interval))
        return self.alive(name, now)

    def alive(self, name: NodeName, now: float, *, synced: bool = False) -> NodeDecision:
        """Any report from the node: its agent is alive. Back from unreachable: online, and
        a full sync asked unless the report is one (`synced`)."""
        d = NodeDecision()
        node = self._ensure(name, d)
        node.last_heartbeat = now
        if node.status is UNREACHABLE:
            self._set_status(node, ONLINE, now, d)
            if not synced:
                d.syncs.append((node.name, "node online"))
        return d

    def check(self, now: float) -> NodeDecision:
        """Online nodes silent for 3 x their heartbeat interval become unreachable."""
        d = NodeDecision()
        default = self.timeout
        timeouts = self.timeouts
        for node in self.nodes.values():
            if node.status is ONLINE and (node.last_heartbeat or 0.0) < (
                    now - timeouts.get(node.name, default)):
                self._set_status(node, UNREACHABLE, now, d)
        return d

    def set_isos(self, name: NodeName, isos: Iterable[str]) -> NodeDecision:
        """The node's ISO images (what `cdimage` may name): stored when they changed."""
        d = NodeDecision()
        node = self._ensure(name, d)
        fresh = frozenset(isos)
        if fresh != node.isos:
            node.isos = fresh
            d.stored.append(node)
        return d

    def online(self) -> list[NodeName]:
        return [n.name for n in self.nodes.values() if n.status is ONLINE]

    def _ensure(self, name: NodeName, d: NodeDecision) -> Node:
        node = self.nodes.get(name)
        if node is None:
            node = Node(name, MAINTENANCE if name in self.maintenance else UNREACHABLE)
            self.nodes[name] = node
            d.stored.append(node)
            d.added.append((name, node.status))
        return node

    @staticmethod
    def _set_status(node: Node, status: NodeStatus, now: float, d: NodeDecision) -> None:
        previous = node.status
        if previous is status:
            return
        node.status = status
        d.stored.append(node)
        d.changes.append(NodeChange(node.name, previous, status, now))
