"""What a node-health decision makes the daemon do (vmd.daemon.nodes.node_effects), as the
`Effects` value the pipeline is handed: the nodes' rows, one `node.<node>.status` event per
change (encoded by vmd.bus, in the order of the changes), one `sync_request` per full sync
asked. No broker: the rules themselves are tested in tests/fsm/test_nodes.py.
"""

from __future__ import annotations

import json

from vmd.bus import Event, SyncRequest
from vmd.daemon.effects import Effects
from vmd.daemon.nodes import node_effects
from vmd.fsm.nodes import NodeHealth
from vmd.model import Node, NodeName, NodeStatus

N1, N2 = NodeName("node1"), NodeName("node2")


def test_a_node_back_online_is_stored_announced_and_asked_for_a_full_sync() -> None:
    health = NodeHealth({N1: Node(N1, NodeStatus.UNREACHABLE)}, heartbeat_interval=5.0,
                        maintenance=frozenset())
    fx = node_effects(health.alive(N1, 0.0), Effects())
    assert fx.nodes == [health.nodes[N1]]
    assert fx.events is not None and [e.routing_key for e in fx.events] == ["node.node1.status"]
    (event,) = fx.events
    assert isinstance(event, Event)
    assert json.loads(event.data) == {"node": "node1", "status": "online",
                                      "previous": "unreachable",
                                      "time": "1970-01-01T00:00:00.000Z"}
    assert fx.orders == [SyncRequest(node=N1, reason="node online")]
    assert fx.answers is None and fx.settles is None  # a node decision answers nobody


def test_silent_nodes_are_announced_in_the_order_they_changed() -> None:
    nodes = {n: Node(n, NodeStatus.ONLINE, last_heartbeat=0.0) for n in (N1, N2)}
    health = NodeHealth(nodes, heartbeat_interval=1.0, maintenance=frozenset())
    fx = node_effects(health.check(10.0), Effects())
    assert fx.events is not None
    assert [json.loads(e.data)["node"] for e in fx.events] == ["node1", "node2"]
    assert fx.orders is None  # unreachable: nothing to ask


def test_a_report_that_changes_nothing_makes_no_effects() -> None:
    health = NodeHealth({N1: Node(N1, NodeStatus.ONLINE)}, heartbeat_interval=5.0,
                        maintenance=frozenset())
    assert not node_effects(health.alive(N1, 1.0), Effects())
