"""Node-health rules (vmd.fsm.nodes) as a table: each input, what it changes and asks for.

Pure: no broker, no clock but the numbers given. The daemon's broker tests
(tests/daemon/test_history_liveness.py, test_nodes_observations.py) cover the same rules
end to end; these pin each rule alone.
"""

from __future__ import annotations

import pytest

from vmd.fsm.nodes import (
    MAINTENANCE,
    MAX_INTERVAL,
    MIN_INTERVAL,
    ONLINE,
    UNREACHABLE,
    NodeChange,
    NodeHealth,
    node_routing_key,
)
from vmd.model import Node, NodeName, NodeStatus

N1 = NodeName("node1")


def health(*nodes: Node, maintenance: frozenset[str] = frozenset(),
           interval: float = 5.0) -> NodeHealth:
    return NodeHealth({n.name: n for n in nodes}, heartbeat_interval=interval,
                      maintenance=maintenance)


def test_a_node_first_named_is_added_then_online_and_a_full_sync_asks_no_sync() -> None:
    h = health()
    d = h.alive(N1, 10.0, synced=True)
    assert d.added == [(N1, UNREACHABLE)]
    assert d.changes == [NodeChange(N1, UNREACHABLE, ONLINE, 10.0)]
    assert d.syncs == []  # the report is the sync
    assert h.nodes[N1].status is ONLINE and h.nodes[N1].last_heartbeat == 10.0


@pytest.mark.parametrize(("status", "synced", "changes", "syncs"), [
    pytest.param(UNREACHABLE, False, [(UNREACHABLE, ONLINE)], [(N1, "node online")],
                 id="unreachable-heartbeat-asks-a-sync"),
    pytest.param(UNREACHABLE, True, [(UNREACHABLE, ONLINE)], [], id="unreachable-full-sync"),
    pytest.param(ONLINE, False, [], [], id="online-stays"),
    pytest.param(MAINTENANCE, False, [], [], id="maintenance-whatever-it-says"),
])
def test_any_report_proves_its_node_alive(status: NodeStatus, synced: bool,
                                          changes: list[tuple[NodeStatus, NodeStatus]],
                                          syncs: list[tuple[NodeName, str]]) -> None:
    h = health(Node(N1, status))
    d = h.alive(N1, 3.0, synced=synced)
    assert [(c.previous, c.status) for c in d.changes] == changes
    assert d.syncs == syncs
    assert h.nodes[N1].last_heartbeat == 3.0
    assert bool(d) is bool(changes)  # only a change is stored


@pytest.mark.parametrize(("interval", "announced", "silent", "status"), [
    pytest.param(5.0, None, 14.9, ONLINE, id="default-not-yet"),
    pytest.param(5.0, None, 15.1, UNREACHABLE, id="default-3x"),
    pytest.param(0.3, 5.0, 14.9, ONLINE, id="own-interval-not-yet"),
    pytest.param(0.3, 5.0, 15.1, UNREACHABLE, id="own-interval-3x"),
    pytest.param(5.0, 0.0, 3 * MIN_INTERVAL - 0.01, ONLINE, id="bounded-below"),
    pytest.param(5.0, 1e9, 3 * MAX_INTERVAL - 1, ONLINE, id="bounded-above"),
])
def test_silence_for_three_intervals_makes_a_node_unreachable(
    interval: float, announced: float | None, silent: float, status: NodeStatus,
) -> None:
    h = health(Node(N1, ONLINE), interval=interval)
    h.heartbeat(N1, 100.0, announced)
    d = h.check(100.0 + silent)
    assert h.nodes[N1].status is status
    assert [c.status for c in d.changes] == ([] if status is ONLINE else [UNREACHABLE])


def test_restore_applies_the_maintenance_list_and_gives_a_full_timeout() -> None:
    h = health(Node(N1, ONLINE, last_heartbeat=0.0), Node(NodeName("node2"), MAINTENANCE),
               maintenance=frozenset({"node1", "node3"}))
    d = h.restore(50.0)
    assert [(c.node, c.previous, c.status) for c in d.changes] == [
        (N1, ONLINE, MAINTENANCE), ("node2", MAINTENANCE, UNREACHABLE)]
    assert d.added == [("node3", MAINTENANCE)]  # named in the list, not known yet
    assert all(n.last_heartbeat == 50.0 for n in h.nodes.values() if n.name != "node3")


def test_isos_are_stored_only_when_they_change() -> None:
    h = health(Node(N1, ONLINE))
    assert h.set_isos(N1, ["a.iso"]).stored == [h.nodes[N1]]
    assert not h.set_isos(N1, ["a.iso"])
    assert h.nodes[N1].isos == frozenset({"a.iso"})


def test_the_event_body_and_routing_key() -> None:
    change = NodeChange(N1, UNREACHABLE, ONLINE, 0.0)
    assert node_routing_key(N1) == "node.node1.status"
    assert change.event() == {"node": "node1", "status": "online", "previous": "unreachable",
                              "time": "1970-01-01T00:00:00.000Z"}
