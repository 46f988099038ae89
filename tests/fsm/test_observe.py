"""docs/fsm.md §2 mapping, §4 (frozen), §5: node observations and full syncs."""

from __future__ import annotations

import pytest

from vmd.fsm import Ignored, expand_full_sync, full_sync, map_node_state
from vmd.model import Cause, Observation, VmStatus, VmUuid

from .helpers import ADMIN, HOST, NODE, NODE2, NOW, OWNER_B, UUID, make_vm, make_world, obs, put

S = VmStatus
NEW = VmUuid("6e2b2c5f-2c8d-4c3f-8b90-000000000002")


@pytest.mark.parametrize(
    ("state", "status"),
    [
        pytest.param("running", S.RUNNING, id="running"),
        pytest.param("stopped", S.STOPPED, id="stopped"),
        pytest.param("installed", S.STOPPED, id="installed"),
        pytest.param("down", S.STOPPED, id="down"),
        pytest.param("stopping", S.STOPPING, id="stopping"),
        pytest.param("failed", S.ERROR, id="failed"),
        pytest.param(None, S.NOTCREATED, id="absent"),
        *(pytest.param(s, None, id=s) for s in ("ready", "shutting_down", "incomplete",
                                                 "configured", "provisioning", "receiving",
                                                 "weird")),
    ],
)
def test_mapping(state: str | None, status: VmStatus | None) -> None:
    assert map_node_state(state) is status


@pytest.mark.parametrize(
    ("start", "state", "status", "ignored"),
    [
        pytest.param(S.RUNNING, "stopped", S.STOPPED, None, id="running-stopped"),
        pytest.param(S.STOPPED, "running", S.RUNNING, None, id="stopped-running"),
        pytest.param(S.RUNNING, "stopping", S.STOPPING, None, id="kvm-stopping"),
        pytest.param(S.RUNNING, "failed", S.ERROR, None, id="crash"),
        pytest.param(S.RUNNING, None, S.NOTCREATED, None, id="deleted"),
        pytest.param(S.NOTCREATED, "running", S.RUNNING, None, id="reappeared"),
        pytest.param(S.NOTCREATED, "installed", S.STOPPED, None, id="reappeared-stopped"),
        pytest.param(S.ERROR, "running", S.RUNNING, None, id="error-recovered"),
        pytest.param(S.RUNNING, "running", S.RUNNING, None, id="equal"),
        pytest.param(S.RUNNING, "ready", S.RUNNING, Ignored.IN_BETWEEN, id="in-between"),
        pytest.param(S.FROZEN, "running", S.FROZEN, Ignored.FROZEN, id="frozen-running"),
        pytest.param(S.FROZEN, None, S.FROZEN, Ignored.FROZEN, id="frozen-absent"),
        pytest.param(S.FROZEN, "stopped", S.FROZEN, None, id="frozen-stopped-is-fine"),
    ],
)
def test_observation(start: VmStatus, state: str | None, status: VmStatus,
                     ignored: Ignored | None) -> None:
    vm = make_vm(start, status_change=NOW - 100)
    world = make_world(vm)
    d = obs(world, state, NOW)
    assert vm.status is status and d.ignored is ignored
    assert d.frozen_ignored is (ignored is Ignored.FROZEN)
    if status is not start:
        (c,) = d.changes
        assert (c.previous, c.status, c.cause, c.time, c.seq, c.task_id) == (
            start, status, Cause.NODE, NOW, 1, None)
        assert vm.status_change == NOW and vm.observed_at == NOW and d.vm is vm
    else:
        assert d.changes == () and vm.seq == 0 and vm.status_change == NOW - 100


def test_older_observation_is_dropped_equal_one_moves_the_clock() -> None:
    vm = make_vm(S.RUNNING)
    world = make_world(vm)
    assert obs(world, "stopped", NOW).changes
    d = obs(world, "running", NOW - 1)
    assert d.ignored is Ignored.STALE and vm.status is S.STOPPED and vm.seq == 1
    assert obs(world, "stopped", NOW + 10).changes == () and vm.observed_at == NOW + 10
    d = obs(world, "running", NOW + 5)  # older than the equal one just accepted
    assert d.ignored is Ignored.STALE and vm.status is S.STOPPED
    assert obs(world, "running", NOW + 10).changes  # same time is not older


def test_observation_older_than_a_change_vmd_made_is_dropped() -> None:
    # docs/fsm.md §5: older than the last applied change (by change time) -> dropped. A full
    # sync listed just before a start was decided must not pull the VM back to stopped.
    vm = make_vm(S.STOPPED)
    world = make_world(vm)
    put(world, ADMIN, "start", now=NOW + 10)
    assert vm.status is S.STARTING
    d = obs(world, "stopped", NOW + 5)
    assert d.ignored is Ignored.STALE and vm.status is S.STARTING
    assert obs(world, "running", NOW + 11).changes and vm.status is S.RUNNING


def test_first_seen_vm_is_added() -> None:
    world = make_world()
    obj = {"uuid": NEW, "hostname": "new.example.com", "alias": "new", "brand": "bhyve",
           "owner_uuid": OWNER_B, "internal_metadata": {"ostype": "Windows"},
           "tags": {"ostype": "linux"}, "snapshots": [{"name": "s1"}], "state": "running"}
    d = obs(world, "running", NOW, uuid=NEW, vm=obj)
    vm = d.new_vm
    assert vm is not None and world.vms.get(NEW) is vm and world.vms.by_hostname["new.example.com"]
    assert (vm.hostname, vm.alias, vm.brand, vm.owner_uuid, vm.node) == (
        "new.example.com", "new", "bhyve", OWNER_B, NODE)
    assert vm.is_windows and vm.snapshots == 1 and vm.active_definition is obj
    (c,) = d.changes
    assert (c.previous, c.status, c.seq, c.cause) == (S.NOTCREATED, S.RUNNING, 1, Cause.NODE)


def test_first_seen_tags_ostype_and_in_between() -> None:
    world = make_world()
    d = obs(world, "provisioning", NOW, uuid=NEW,
            vm={"hostname": "p.example", "tags": {"ostype": "windows"}})
    assert d.new_vm is not None and d.new_vm.status is S.NOTCREATED and d.changes == ()
    assert d.new_vm.is_windows
    assert obs(world, "running", NOW + 1, uuid=NEW).changes


def test_unknown_vm_without_object_or_absent() -> None:
    world = make_world()
    assert obs(world, "running", NOW, uuid=NEW).ignored is Ignored.UNKNOWN_VM
    assert obs(world, None, NOW, uuid=NEW, vm={"hostname": "x"}).ignored is Ignored.UNKNOWN_VM
    assert len(world.vms) == 0


def test_vm_object_refreshes_the_record() -> None:
    vm = make_vm(S.RUNNING)
    world = make_world(vm)
    d = obs(world, "running", NOW, vm={"hostname": "renamed.example", "alias": "r",
                                       "owner_uuid": OWNER_B, "brand": "kvm", "snapshots": []})
    assert d.vm is vm and d.changes == ()
    assert vm.hostname == "renamed.example" and vm.owner_uuid == OWNER_B
    assert world.vms.by_hostname.get("renamed.example") is vm and HOST not in world.vms.by_hostname
    assert list(world.vms.owned_by([OWNER_B])) == [vm]


def test_other_node_is_ignored_unless_the_vm_moved() -> None:
    vm = make_vm(S.RUNNING)
    world = make_world(vm)
    assert obs(world, "stopped", NOW, node=NODE2).ignored is Ignored.FOREIGN_NODE
    assert obs(world, None, NOW, node=NODE2).ignored is Ignored.FOREIGN_NODE
    assert vm.status is S.RUNNING
    obs(world, None, NOW + 1)
    assert vm.status is S.NOTCREATED
    d = obs(world, "running", NOW - 500, node=NODE2)  # another clock
    assert vm.node == NODE2 and vm.status is S.RUNNING and d.changes
    assert world.vms.on_node(NODE2) == {vm.uuid} and world.vms.on_node(NODE) == frozenset()


def test_observations_while_a_task_is_in_flight() -> None:
    vm = make_vm(S.STOPPED)
    world = make_world(vm)
    d = put(world, ADMIN, "start")
    assert d.new_task is not None and vm.status is S.STARTING
    assert obs(world, "stopped", NOW + 1).changes  # contradicts: applied anyway
    assert vm.status is S.STOPPED and vm.task_id == d.new_task.task_id
    assert obs(world, "running", NOW + 2).changes and vm.status is S.RUNNING


def test_full_sync() -> None:
    a = make_vm(S.RUNNING, uuid="00000000-0000-4000-8000-00000000000a", hostname="a.example")
    b = make_vm(S.STOPPED, uuid="00000000-0000-4000-8000-00000000000b", hostname="b.example")
    c = make_vm(S.NOTCREATED, uuid="00000000-0000-4000-8000-00000000000c", hostname="c.ex")
    other = make_vm(S.RUNNING, uuid=UUID, node=NODE2)
    world = make_world(a, b, c, other)
    listing = [
        Observation(a.uuid, NODE, "stopped", NOW - 3),
        Observation(NEW, NODE, "running", NOW - 2, {"hostname": "n.example"}),
    ]
    expanded = expand_full_sync(world, NODE, listing, NOW)
    assert [o.uuid for o in expanded] == [a.uuid, NEW, b.uuid, c.uuid]
    assert expanded[2] == Observation(b.uuid, NODE, None, NOW)
    decisions = full_sync(world, NODE, listing, NOW, NOW + 1)
    assert (a.status, b.status, c.status, other.status) == (
        S.STOPPED, S.NOTCREATED, S.NOTCREATED, S.RUNNING)
    assert world.vms.get(NEW) is not None
    changes = [c for d in decisions for c in d.changes]
    assert len(changes) == 3 and all(c.cause is Cause.SYNC for c in changes)
    assert decisions[3].changes == ()  # c was already notcreated



def test_a_full_sync_keeps_the_vms_it_could_not_read() -> None:
    """A VM the node listed with a value the daemon could not keep (left out by the decoder,
    `keep`) is on the node: not observed absent, its record unchanged."""
    a = make_vm(S.RUNNING, uuid="00000000-0000-4000-8000-00000000000a", hostname="a.example")
    b = make_vm(S.RUNNING, uuid="00000000-0000-4000-8000-00000000000b", hostname="b.example")
    world = make_world(a, b)
    assert [o.uuid for o in expand_full_sync(world, NODE, [], NOW, {a.uuid})] == [b.uuid]
    full_sync(world, NODE, [], NOW, NOW + 1, keep={a.uuid})
    assert (a.status, b.status) == (S.RUNNING, S.NOTCREATED)
