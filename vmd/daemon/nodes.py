"""Compute nodes at the I/O edge: feeds node-health inputs to vmd.fsm.nodes, submits effects.

The rules (any report proves its node online, silence for 3 x its heartbeat interval makes
it unreachable, maintenance from the configuration, when a full sync is asked) are pure,
in vmd.fsm.nodes (`NodeHealth`). This module turns each `NodeDecision` into the pipeline's
`Effects`: the nodes' rows, a `node.<node>.status` event per change (`{"node", "status",
"previous", "time"}`, in the same turn), a `sync_request` per full sync asked; and counts
and logs the changes.

The monitor gives no verdict while the reports consumer is backlogged: a burst of
observations must not make vmd mistake its own delay for a dead node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from vmd.bus import Event, SyncRequest
from vmd.daemon.commit import Effects, Pipeline
from vmd.daemon.options import Clock
from vmd.fsm.nodes import ONLINE, NodeDecision, NodeHealth, node_routing_key
from vmd.model import Node, NodeName
from vmd.obs.logging import get_logger, log_context
from vmd.obs.metrics import DaemonMetrics

log = get_logger(__name__)

__all__ = ["Nodes", "node_effects", "node_routing_key", "run_node_monitor"]


def node_effects(d: NodeDecision, fx: Effects) -> Effects:
    """What a node decision makes the pipeline do: rows, events, sync requests."""
    if d.stored:
        fx.put_nodes(d.stored)
    for c in d.changes:
        fx.event(Event(node_routing_key(c.node), c.event()))
    for node, reason in d.syncs:
        fx.order(SyncRequest(node=node, reason=reason))
    return fx


class Nodes:
    """Every node vmd knows (the `World`'s `nodes` mapping): the inputs about them go to
    `NodeHealth`, the effects to the pipeline."""

    def __init__(
        self, *, nodes: dict[NodeName, Node], pipeline: Pipeline, metrics: DaemonMetrics,
        heartbeat_interval: float, maintenance: frozenset[str],
    ) -> None:
        self.health = NodeHealth(nodes, heartbeat_interval=heartbeat_interval,
                                 maintenance=maintenance)
        self.nodes = nodes
        self.pipeline = pipeline
        self._counts = metrics.node_status

    @property
    def timeouts(self) -> dict[NodeName, float]:
        return self.health.timeouts

    def restore(self, now: float) -> None:
        """After loading the store: every node gets a full heartbeat timeout from now, and
        the `[daemon] maintenance` list is applied."""
        self.submit(self.health.restore(now))

    # What a report says of its node: into that report's effects (vmd.daemon.reports).

    def ensure(self, name: NodeName, fx: Effects) -> None:
        """A node named in a report: added the first time."""
        self._book(self.health.ensure(name), fx)

    def heartbeat(self, name: NodeName, now: float, interval: float | None,
                  fx: Effects) -> None:
        self._book(self.health.heartbeat(name, now, interval), fx)

    def alive(self, name: NodeName, now: float, fx: Effects, *, synced: bool = False) -> None:
        self._book(self.health.alive(name, now, synced=synced), fx)

    def set_isos(self, name: NodeName, isos: Iterable[str], fx: Effects) -> None:
        self._book(self.health.set_isos(name, isos), fx)

    # The daemon's own inputs (start-up, the monitor, reconcile): a step each.

    def check(self, now: float) -> int:
        """Online nodes silent too long become unreachable; how many did."""
        d = self.health.check(now)
        self.submit(d)
        return len(d.changes)

    def request_sync(self, node: NodeName, reason: str) -> None:
        """Ask the node's agent for a full sync (sent with the current turn)."""
        fx = Effects()
        fx.order(SyncRequest(node=node, reason=reason))
        self.pipeline.submit(fx)

    def online(self) -> list[NodeName]:
        return self.health.online()

    def submit(self, d: NodeDecision) -> None:
        """Hand the effects of `d` to the pipeline (a step of its own)."""
        if d:
            self.pipeline.submit(self._book(d, Effects()))

    def _book(self, d: NodeDecision, fx: Effects) -> Effects:
        """Count and log what `d` changed, and add its effects to `fx`."""
        if not d:
            return fx
        for name, status in d.added:
            self._counts.add(status.value)
            with log_context(node=name):
                log.info("node added", status=status.value)
        for c in d.changes:
            self._counts.move(c.previous.value, c.status.value)
            with log_context(node=c.node):
                if c.status is ONLINE:
                    log.info("node status changed", status=c.status.value,
                             previous=c.previous.value)
                else:
                    log.warning("node status changed", status=c.status.value,
                                previous=c.previous.value)
        return node_effects(d, fx)


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
