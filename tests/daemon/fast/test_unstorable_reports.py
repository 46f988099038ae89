"""A report with a value the store cannot hold is refused whole at the edge, so the daemon
never holds a VM it could not store, and the node's next full sync still applies
(docs/bus.md §3 "Field limits"; vmd.bus.agent_fields.RefusedValue).

The defect this guards: the step decides in memory before the write, and the store refuses
a NUL string or a key over MAX_KEY_BYTES (RowError) only when the row is added; the report
was dead-lettered but its VM stayed in the world, and every later full sync of that node,
which either named that VM or missed it (gone: a row of it again), failed on the same row.
Each case here sends the forged report through the real encoder and decoder, checks it was
acked, counted as `bad_value` and changed nothing, that world and store agree, and then that
a good full sync from the same node is applied and stored.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from support.fastdaemon import FastDaemon, vm_uuid

from vmd.bus import FullSync, ObservationReport
from vmd.model import JsonObject, NodeName, Observation, VmStatus, VmUuid
from vmd.store.rows import MAX_KEY_BYTES

NODE1 = NodeName("node1")
NEW = vm_uuid(99)  # a VM no one has seen yet


def refused(fast: FastDaemon, reason: str) -> float:
    value = fast.metrics.registry.get_sample_value(
        "vmd_agent_messages_refused_total", {"reason": reason})
    return value or 0.0


def _vm(uuid: VmUuid, **fields: Any) -> JsonObject:
    return {"uuid": uuid, "hostname": "new.example.com", "alias": "new", "brand": "kvm",
            "owner_uuid": "8a1a4e6c-0000-4000-8000-000000000001"} | fields


def _stored(fast: FastDaemon) -> dict[str, tuple[str, str, VmStatus]]:
    fleet = fast.store.load_fleet(fast.clock())
    return {vm.uuid: (vm.hostname, vm.alias, vm.status) for vm in fleet.vms.values()}


def _held(fast: FastDaemon) -> dict[str, tuple[str, str, VmStatus]]:
    return {vm.uuid: (vm.hostname, vm.alias, vm.status) for vm in fast.world.vms}


def _new(uuid: VmUuid, **fields: Any) -> Observation:
    return Observation(uuid, NODE1, "running", 0.0, _vm(uuid, **fields))


def _web01(**fields: Any) -> Observation:
    """web01 of the seeded fleet, running, with its VM object changed by `fields`."""
    uuid = vm_uuid(1)
    return Observation(uuid, NODE1, "running", 0.0, _vm(uuid, hostname="web01.example.com",
                                                         alias="web01") | fields)


HOSTILE = [
    pytest.param(_new(NEW, hostname="new\x00.example.com"), id="nul-hostname-new-vm"),
    pytest.param(_new(NEW, alias="a\x00b"), id="nul-alias-new-vm"),
    pytest.param(_new(NEW, owner_uuid="o\x00"), id="nul-owner"),
    pytest.param(_new(NEW, internal_metadata={"ostype": "win\x00dows"}), id="nul-ostype"),
    pytest.param(_web01(hostname="web01\x00.example.com"), id="nul-hostname-known-vm"),
    pytest.param(_new(NEW, hostname="h" * 256), id="hostname-over-255-bytes"),
    pytest.param(_new(NEW, owner_uuid="o" * 129), id="owner-over-routing-key-room"),
    pytest.param(_new(VmUuid("u" * (MAX_KEY_BYTES + 1))), id="uuid-over-key-bytes"),
    pytest.param(_new(VmUuid("web99")), id="uuid-not-rfc4122"),
    pytest.param(_new(VmUuid(NEW[:-1] + "\x00")), id="uuid-with-nul"),
]


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("kind", ["observations", "sync"])
async def test_an_unstorable_vm_is_refused_and_the_next_full_sync_applies(
        fast: FastDaemon, hostile: Observation, kind: str) -> None:
    before = _held(fast)
    assert before == _stored(fast)
    now = fast.clock()
    hostile = replace(hostile, change_time=now)
    fleet = [Observation(vm.uuid, NODE1, vm.state, now, vm.obj()) for vm in fast.fleet.values()
             if vm.uuid != hostile.uuid]
    report = (ObservationReport(NODE1, now, (hostile,)) if kind == "observations"
              else FullSync(NODE1, now, (*fleet, hostile), ("debian-12.iso",)))
    delivery = await fast.report(report)
    assert fast.bus.settled(delivery).how == "ack"  # refused, not dead-lettered: no bug here
    assert refused(fast, "bad_value") == 1
    assert _held(fast) == before == _stored(fast)  # nothing held that is not stored
    # The same node's next genuine full sync is applied and stored (it failed for good).
    fast.clock.advance(1.0)
    web01 = fast.fleet["web01.example.com"]
    web01.state = "stopped"
    await fast.sync("node1", list(fast.fleet.values()))
    assert fast.vm("web01.example.com").status is VmStatus.STOPPED
    assert _held(fast) == _stored(fast)
    assert _stored(fast)[web01.uuid][2] is VmStatus.STOPPED
    assert not fast.bus.dead


async def test_a_vm_object_outside_the_kept_fields_may_hold_a_nul(fast: FastDaemon) -> None:
    """Only what becomes a column is checked: the rest of a VM object is stored as JSON,
    which escapes a NUL (a refusal there would refuse a node's syncs for nothing)."""
    now = fast.clock()
    obs = replace(_new(NEW, customer_metadata={"note": "a\x00b"}), change_time=now)
    await fast.report(ObservationReport(NODE1, now, (obs,)))
    assert refused(fast, "bad_value") == 0
    assert _held(fast)[NEW] == ("new.example.com", "new", VmStatus.RUNNING)
    assert _held(fast) == _stored(fast)
