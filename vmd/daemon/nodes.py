"""Compute nodes: liveness from what their agents say, maintenance, ISO lists, node events.

Any report from a node's agent (a heartbeat, a full sync, observations, a task result)
proves the node online: an `unreachable` node becomes `online` at its agent's first report,
so the first status a client reads after an agent's (re)connect and full sync says
`online` next to that sync's data. Silent for 3 x the interval its own heartbeats announce
(`interval` of each heartbeat, kept between `MIN_INTERVAL` and `MAX_INTERVAL`; `[daemon]
heartbeat_interval` for a node not heard from yet, e.g. after a daemon restart), a node
becomes `unreachable` (its VMs' commands answer 423 `Node is not operational`). Back
online by any report other than a full sync, the daemon asks its agent for one (a
`sync_request`), so that everything that happened while vmd could not hear the node, and
every re-sync that waited for it, converges at once; back by a full sync, that sync is it.

Maintenance is set by an admin in the configuration (`[daemon] maintenance = ["node07"]`,
then a restart): such a node is `maintenance` whatever its heartbeats say; removed from the
list it is `unreachable` until its next heartbeat. vmd adds no public path for it: the
protocol (protocol.md §2) has none.

The monitor gives no verdict while the reports consumer is backlogged: a burst of
observations must not make vmd mistake its own delay for a dead node.

Every status change is stored (table `nodes`) and published as `node.<node>.status` with
`{"node", "status", "previous", "time"}` in the same turn. Heartbeat times are vmd's own
clock at receipt (not the agent's), so clock skew between hosts cannot mark a node dead.
Heartbeats alone are not stored: a restarted daemon gives every node a full timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from vmd.bus import Event, SyncRequest
from vmd.daemon.commit import Pipeline
from vmd.daemon.options import Clock
from vmd.fsm import iso_time
from vmd.model import Node, NodeName, NodeStatus
from vmd.obs.logging import get_logger, log_context
from vmd.obs.metrics import DaemonMetrics

log = get_logger(__name__)
ONLINE, UNREACHABLE, MAINTENANCE = NodeStatus.ONLINE, NodeStatus.UNREACHABLE, NodeStatus.MAINTENANCE
# Bounds on the heartbeat interval an agent announces (seconds): below the lower one the
# monitor's own tick would decide, above the upper one a dead node would go unnoticed.
MIN_INTERVAL = 0.1
MAX_INTERVAL = 600.0


def node_routing_key(node: str) -> str:
    return f"node.{node}.status"


class Nodes:
    """Every node vmd knows (the `World`'s `nodes` mapping) and what changes them."""

    def __init__(
        self, *, nodes: dict[NodeName, Node], pipeline: Pipeline, metrics: DaemonMetrics,
        heartbeat_interval: float, maintenance: frozenset[str],
    ) -> None:
        self.nodes = nodes
        self.pipeline = pipeline
        self.maintenance = maintenance
        self.timeout = 3 * heartbeat_interval  # for nodes not heard from yet
        # Each node's timeout: 3 x the interval its last heartbeat announced.
        self.timeouts: dict[NodeName, float] = {}
        self._counts = metrics.node_status

    def restore(self, now: float) -> None:
        """After loading the store: every node gets a full heartbeat timeout from now, and
        the `[daemon] maintenance` list is applied."""
        for node in self.nodes.values():
            node.last_heartbeat = now
            if node.name in self.maintenance:
                self.set_status(node, MAINTENANCE, now)
            elif node.status is MAINTENANCE:
                self.set_status(node, UNREACHABLE, now)  # online at its next heartbeat
        for name in sorted(self.maintenance):
            self.ensure(NodeName(name))

    def ensure(self, name: NodeName) -> Node:
        """The node, added (unreachable, or in maintenance) the first time it is named."""
        node = self.nodes.get(name)
        if node is None:
            status = MAINTENANCE if name in self.maintenance else UNREACHABLE
            node = Node(name, status)
            self.nodes[name] = node
            self._counts.add(status.value)
            self.pipeline.turn.batch.put_node(node)
            self.pipeline.wake()
            with log_context(node=name):
                log.info("node added", status=status.value)
        return node

    def set_status(self, node: Node, status: NodeStatus, now: float) -> None:
        previous = node.status
        if previous is status:
            return
        node.status = status
        turn = self.pipeline.turn
        turn.batch.put_node(node)
        turn.events.append(Event(node_routing_key(node.name), {
            "node": node.name, "status": status.value, "previous": previous.value,
            "time": iso_time(now),
        }))
        self._counts.move(previous.value, status.value)
        self.pipeline.wake()
        with log_context(node=node.name):
            if status is ONLINE:
                log.info("node status changed", status=status.value, previous=previous.value)
            else:
                log.warning("node status changed", status=status.value, previous=previous.value)

    def heartbeat(self, name: NodeName, now: float, interval: float | None = None) -> None:
        """A heartbeat: the node is alive, and beats every `interval` seconds."""
        if interval is not None:
            self.timeouts[name] = 3 * min(MAX_INTERVAL, max(MIN_INTERVAL, interval))
        self.alive(name, now)

    def alive(self, name: NodeName, now: float, *, synced: bool = False) -> None:
        """Any report from the node: its agent is alive. Back from unreachable: online, and
        a full sync asked unless the report is one (`synced`)."""
        node = self.ensure(name)
        node.last_heartbeat = now
        if node.status is UNREACHABLE:
            self.set_status(node, ONLINE, now)
            if not synced:
                self.request_sync(node.name, "node online")

    def check(self, now: float) -> int:
        """Online nodes silent for 3 x their heartbeat interval become unreachable; how
        many did."""
        default = self.timeout
        timeouts = self.timeouts
        n = 0
        for node in self.nodes.values():
            if node.status is ONLINE and (node.last_heartbeat or 0.0) < (
                    now - timeouts.get(node.name, default)):
                self.set_status(node, UNREACHABLE, now)
                n += 1
        return n

    def set_isos(self, name: NodeName, isos: Iterable[str]) -> None:
        node = self.ensure(name)
        fresh = frozenset(isos)
        if fresh != node.isos:
            node.isos = fresh
            self.pipeline.turn.batch.put_node(node)
            self.pipeline.wake()

    def request_sync(self, node: NodeName, reason: str) -> None:
        """Ask the node's agent for a full sync (sent with the current turn)."""
        self.pipeline.turn.orders.append(SyncRequest(node=node, reason=reason))
        self.pipeline.wake()

    def online(self) -> list[NodeName]:
        return [n.name for n in self.nodes.values() if n.status is ONLINE]


async def run_node_monitor(
    *, nodes: Nodes, clock: Clock, tick: float, backlogged: Callable[[], bool]
) -> None:
    """Mark silent nodes unreachable until cancelled (stopped first thing when draining:
    heartbeats are no longer consumed then, docs/shutdown.md step 1). No verdict while the
    reports consumer is `backlogged` (its whole prefetch in hand): heartbeats may be
    waiting in the queue behind other reports, late by vmd's fault, not the node's."""
    while True:
        if not backlogged():
            nodes.check(clock())
        await asyncio.sleep(tick)
