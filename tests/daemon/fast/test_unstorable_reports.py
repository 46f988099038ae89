"""A VM with a value the store cannot hold is left out of its report at the edge, the rest
of the report applied, so the daemon never holds a VM it could not store, one bad VM does not
stop its node's other VMs syncing, and the node's next full sync still applies (docs/bus.md
§3 "Field limits"; vmd.bus.agent_fields.RefusedValue, LeftOut).

The defect this guards: the step decides in memory before the write, and the store refuses
a NUL string or a key over MAX_KEY_BYTES (RowError) only when the row is added; the report
was dead-lettered but its VM stayed in the world, and every later full sync of that node,
which either named that VM or missed it (gone: a row of it again), failed on the same row.
Refusing such a report whole fixed that but cost the other items: a node's whole listing
refused for as long as the bad VM exists, the good observations of a batch lost with the bad
one, a task ended only by its deadline. Each case here sends the forged report through the
real encoder and decoder beside a good item, checks it was acked, the bad item counted as
`bad_value` and left out, the good one applied, a known VM left out of a full sync kept as it
was (not taken for gone), world and store agree, and a good full sync then applies.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from support.fastdaemon import FastDaemon, vm_uuid

from vmd.bus import FullSync, ObservationReport, ResultBatch, TaskResult
from vmd.model import JsonObject, NodeName, Observation, TaskState, VmStatus, VmUuid
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


def _good_web02(now: float) -> Observation:
    """web02 of the seeded fleet (stopped) seen running: the good item beside the bad."""
    uuid = vm_uuid(2)
    return Observation(uuid, NODE1, "running", now,
                       _vm(uuid, hostname="web02.example.com", alias="web02"))


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("kind", ["observations", "sync"])
async def test_an_unstorable_vm_is_left_out_and_the_rest_applied(
        fast: FastDaemon, hostile: Observation, kind: str) -> None:
    before = _held(fast)
    assert before == _stored(fast)
    now = fast.clock()
    hostile = replace(hostile, change_time=now)
    good = _good_web02(now)
    fleet = [Observation(vm.uuid, NODE1, vm.state, now, vm.obj()) for vm in fast.fleet.values()
             if vm.uuid not in (hostile.uuid, good.uuid)]
    report = (ObservationReport(NODE1, now, (hostile, good)) if kind == "observations"
              else FullSync(NODE1, now, (*fleet, hostile, good), ("debian-12.iso",)))
    delivery = await fast.report(report)
    assert fast.bus.settled(delivery).how == "ack"  # not dead-lettered: no bug here
    assert refused(fast, "bad_value") == 1
    # web02 applied; the bad VM not held, or (web01, known) kept as it was: in a full sync
    # not taken for gone from its node.
    expected = before | {good.uuid: ("web02.example.com", "web02", VmStatus.RUNNING)}
    assert _held(fast) == expected == _stored(fast)
    # The same node's next genuine full sync is applied and stored.
    fast.clock.advance(1.0)
    web01 = fast.fleet["web01.example.com"]
    web01.state = "stopped"
    await fast.sync("node1", list(fast.fleet.values()))
    assert fast.vm("web01.example.com").status is VmStatus.STOPPED
    assert _held(fast) == _stored(fast)
    assert _stored(fast)[web01.uuid][2] is VmStatus.STOPPED
    assert not fast.bus.dead


async def test_each_item_left_out_is_counted(fast: FastDaemon) -> None:
    """Two bad VMs in one full sync: two refusals, and neither known VM is taken for gone."""
    before = _held(fast)
    now = fast.clock()
    bad = {vm_uuid(1), vm_uuid(3)}
    vms = tuple(Observation(vm.uuid, NODE1, "stopped", now,
                            vm.obj() | ({"alias": "\x00"} if vm.uuid in bad else {}))
                for vm in fast.fleet.values())
    await fast.report(FullSync(NODE1, now, vms, ("debian-12.iso",)))
    assert refused(fast, "bad_value") == 2
    held = _held(fast)
    assert {u: held[u] for u in bad} == {u: before[u] for u in bad}  # both were running
    assert all(status is VmStatus.STOPPED for u, (_, _, status) in held.items()
               if u not in bad)
    assert held == _stored(fast)


async def test_a_result_applies_without_its_bad_carried_observation(fast: FastDaemon) -> None:
    """A result's own VM changes it carries are left out when bad; the result is applied
    (its task ends now, not at its deadline)."""
    await fast.call("alice", "PUT", "/vm/web02.example.com/status/start")
    (task,) = fast.tasks()
    ok = fast.task_result(task, state="running")
    bad = replace(_good_web02(ok.time), vm=_vm(task.uuid, hostname="web02\x00.example.com"))
    await fast.report(replace(ok, observations=(bad,)))
    assert refused(fast, "bad_value") == 1
    record = fast.world.tasks.get(task.task_id)
    assert record is not None and record.state is TaskState.SUCCESS
    assert _held(fast)[task.uuid] == ("web02.example.com", "web02", VmStatus.RUNNING)
    assert _held(fast) == _stored(fast)


async def test_a_result_with_a_bad_value_of_its_own_is_left_out_of_its_batch(
        fast: FastDaemon) -> None:
    """Results of other tasks are independent: a batch's bad one is left out (its task
    stays pending), the others are applied. A lone result is refused whole."""
    await fast.call("alice", "PUT", "/vm/web02.example.com/status/start")
    await fast.call("alice", "PUT", "/vm/web01.example.com/status/stop")
    start, stop = fast.tasks()
    ok = fast.task_result(start, state="running")
    outcome = replace(fast.task_result(stop, state="stopped").outcome,
                      definition=_vm(stop.uuid, hostname="web01\x00"))
    bad = TaskResult(stop.task_id, stop.uuid, NODE1, stop.action, outcome, ok.time)
    await fast.report(bad)
    assert refused(fast, "bad_value") == 1
    await fast.report(ResultBatch(NODE1, ok.time, (bad, ok)))
    assert refused(fast, "bad_value") == 2
    states = [fast.world.tasks.get(t.task_id) for t in (start, stop)]
    assert [r.state if r else None for r in states] == [TaskState.SUCCESS, TaskState.PENDING]
    assert fast.vm("web02.example.com").status is VmStatus.RUNNING
    assert fast.vm("web01.example.com").status is VmStatus.STOPPING
    assert _held(fast) == _stored(fast)
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
