"""Every record type goes in and comes back equal: by key, through a restore, after a reopen."""

from __future__ import annotations

import dataclasses

import pytest
from support.store import put

from vmd.model import Node, NodeName, NodeStatus, Task, TaskId, Vm, VmStatus
from vmd.store import Batch, IdempotencyRecord, Store
from vmd.store.rows import IDEMPOTENCY, NODES, TASKS, VMS, Table

from .conftest import Target
from .factories import (
    NOW,
    bare_vm,
    ended_task,
    full_node,
    full_vm,
    pending_task,
    record,
    uuid,
)


@pytest.mark.parametrize(
    "vm",
    [pytest.param(full_vm(), id="every-field"), pytest.param(bare_vm(), id="defaults")],
)
def test_vm_round_trip(store: Store, vm: Vm) -> None:
    put(store, vm)
    assert store.get_vm(vm.uuid) == vm
    assert store.load_fleet(NOW).vms == {vm.uuid: vm}


@pytest.mark.parametrize(
    "node",
    [
        pytest.param(full_node(), id="online-with-isos"),
        pytest.param(Node(NodeName("cn09")), id="defaults"),
    ],
)
def test_node_round_trip(store: Store, node: Node) -> None:
    put(store, node)
    assert store.get_node(node.name) == node
    assert store.load_fleet(NOW).nodes == {node.name: node}


def test_task_round_trip(store: Store) -> None:
    pending, ended = pending_task(), ended_task()
    put(store, pending)
    put(store, ended)
    assert store.get_task(pending.task_id) == pending
    assert store.get_task(ended.task_id) == ended
    # Only pending tasks are restored; an ended one is fetched when asked for.
    assert store.load_fleet(NOW).tasks == {pending.task_id: pending}


def test_idempotency_round_trip(store: Store) -> None:
    rec = record()
    put(store, rec)
    assert store.get_idempotency(rec.user, rec.message_id, NOW) == rec
    assert store.load_fleet(NOW).idempotency == {(rec.user, rec.message_id): rec}
    assert store.get_idempotency(rec.user, "other", NOW) is None
    assert store.get_idempotency("bob", rec.message_id, NOW) is None


def test_unknown_keys_are_none(store: Store) -> None:
    assert store.get_vm(uuid(99)) is None
    assert store.get_node(NodeName("nope")) is None
    assert store.get_task(TaskId("0-00000000-0000-0000-0000")) is None


def test_upsert_replaces_and_delete_removes(store: Store) -> None:
    vm = full_vm()
    put(store, vm)
    vm.status, vm.seq, vm.pending_definition, vm.task_id = VmStatus.RUNNING, 4712, None, None
    put(store, vm)
    assert store.get_vm(vm.uuid) == vm
    node, task, rec = full_node(), pending_task(), record()
    put(store, node, task, rec)

    batch = Batch()
    batch.delete_vm(vm.uuid)
    batch.delete_node(node.name)
    batch.delete_task(task.task_id)
    batch.delete_idempotency(rec.user, rec.message_id)
    store.write(batch)

    fleet = store.load_fleet(NOW)
    assert (fleet.vms, fleet.nodes, fleet.tasks, fleet.idempotency) == ({}, {}, {}, {})
    assert store.get_task(task.task_id) is None


def test_everything_is_back_after_reopen(target: Target) -> None:
    vms = [full_vm(1), bare_vm(2), full_vm(3)]
    nodes = [full_node("cn01.example.com"), Node(NodeName("cn02.example.com"))]
    pending, ended, rec = pending_task(1), ended_task(2), record()
    with Store.open(target) as store:
        batch = Batch()
        for vm in vms:
            batch.put_vm(vm)
        for node in nodes:
            batch.put_node(node)
        batch.put_task(pending)
        batch.put_task(ended)
        batch.put_idempotency(rec)
        store.write(batch)

    with Store.open(target) as store:
        fleet = store.load_fleet(NOW)
        assert fleet.vms == {vm.uuid: vm for vm in vms}
        assert fleet.nodes == {node.name: node for node in nodes}
        assert fleet.tasks == {pending.task_id: pending}
        assert fleet.idempotency == {(rec.user, rec.message_id): rec}
        assert store.get_task(ended.task_id) == ended


def test_restore_shares_repeated_strings_and_enum_members(store: Store) -> None:
    node = full_node("cn01.example.com")
    put(store, node)
    batch = Batch()
    for i in range(1, 5):
        vm = bare_vm(i)
        # Fresh, equal but distinct string objects, as if decoded from separate messages.
        vm.node = NodeName("".join(["cn01", ".example.com"]))
        vm.owner_uuid = "".join(["owner", "-x"])
        vm.status = VmStatus.RUNNING
        batch.put_vm(vm)
    store.write(batch)

    fleet = store.load_fleet(NOW)
    restored = list(fleet.vms.values())
    first = restored[0]
    assert len(restored) == 4
    for vm in restored[1:]:
        assert vm.node is first.node
        assert vm.owner_uuid is first.owner_uuid
        assert vm.brand is first.brand
    assert first.node is next(iter(fleet.nodes))
    assert all(vm.status is VmStatus.RUNNING for vm in restored)
    assert all(type(vm.status) is VmStatus for vm in restored)


def test_restore_reads_node_status_as_enum(store: Store) -> None:
    put(store, Node(NodeName("cn03"), NodeStatus.MAINTENANCE, None, frozenset()))
    node = store.load_fleet(NOW).nodes[NodeName("cn03")]
    assert node.status is NodeStatus.MAINTENANCE
    assert node.last_heartbeat is None


@pytest.mark.parametrize(
    ("record_type", "table"),
    [
        pytest.param(Vm, VMS, id="vms"),
        pytest.param(Task, TASKS, id="tasks"),
        pytest.param(Node, NODES, id="nodes"),
        pytest.param(IdempotencyRecord, IDEMPOTENCY, id="idempotency"),
    ],
)
def test_columns_are_the_record_fields_in_order(record_type: type, table: Table) -> None:
    # Restore builds records positionally from these columns: a field added to the model
    # without a migration must fail here, not be silently dropped on the next restart.
    assert [f.name for f in dataclasses.fields(record_type)] == list(table.columns)
