"""Random sequences of requests, node observations, task results and deadlines (hypothesis).

Three VMs on two nodes; every step is one input to the pure core, and after every step the
invariants of docs/fsm.md hold:

- at most one power task (start/stop/reboot/PUT current) in flight per VM, and it is the
  VM's `task_id`;
- a VM is in starting/stopping only while it has a task in flight, or when the last node
  report (observation or `current` answer) it accepted was `stopping` (the node said so:
  KVM's graceful stop; docs/fsm.md §2 lists it as a reason for `stopping`);
- every task ends exactly once (late and duplicate results and deadlines are dropped);
- a frozen VM never changes by a node observation;
- an observation older than the last one applied for that VM (on the same node) changes
  nothing;
- `seq` grows by exactly one per applied change, and each change starts from the status
  the previous one left.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from vmd.fsm import Decision, Ignored, complete_task, expire_task, observe, start_resync
from vmd.fsm.observe import map_node_state
from vmd.model import (
    TRANSITIONAL,
    Action,
    NodeName,
    NodeStatus,
    Observation,
    OutcomeKind,
    Principal,
    Task,
    TaskId,
    TaskOutcome,
    VmStatus,
    VmUuid,
)

from .helpers import ADMIN, ALICE, BOB, NODE, NODE2, NOW, OWNER_B, make_vm, make_world, req

S = VmStatus
UUIDS = [VmUuid(f"00000000-0000-4000-8000-00000000000{i}") for i in range(3)]
NEW_UUID = VmUuid("00000000-0000-4000-8000-0000000000ff")
HOSTS = ["vm0.example", "vm1.example", "vm2.example"]
CODES = {200, 201, 400, 403, 404, 405, 409, 410, 412, 417, 423, 428}

BOOLISH = st.sampled_from([True, False, True, False, 1, 0, "true", "FALSE", "1", "yes", None])
TIMEOUT = st.sampled_from([0, 30, "120", 3600, 180, 3601, -1, "x"])
ISO = st.sampled_from(["debian.iso", "rescuecd.iso", "nosuch.iso", None])
DATA = st.fixed_dictionaries(
    {},
    optional={
        "update": BOOLISH, "force": BOOLISH, "timeout": TIMEOUT, "freeze": BOOLISH,
        "unfreeze": BOOLISH, "cdimage": ISO, "cdimage_once": BOOLISH, "cdimage2": ISO,
        "order_by": st.sampled_from(["-status", "hostname,uuid", "bogus"]),
    },
)
NODE_STATES = st.sampled_from(
    ["running", "stopped", "stopping", "installed", "failed", None, "ready", "provisioning"]
)
KINDS = st.sampled_from([OutcomeKind.SUCCESS, OutcomeKind.SUCCESS, *OutcomeKind])
REQUESTS = st.sampled_from(
    ["start", "stop", "reboot", "current_put", "current_get", "status", "list", "bogus",
     "define", "task"]
)
PRINCIPALS = st.sampled_from([ADMIN, ADMIN, ALICE, BOB])
DEFINITIONS = st.sampled_from(
    [{}, {"ram": 1024}, {"update_disks": [{"path": "/d0", "size": 99}]}]
)


def _power_slot(task: Task) -> bool:
    return task.action is not Action.CURRENT or task.method == "PUT"


class PowerStates(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        vms = [
            make_vm(S.STOPPED, uuid=UUIDS[0], hostname=HOSTS[0]),
            make_vm(S.RUNNING, uuid=UUIDS[1], hostname=HOSTS[1], brand="joyent",
                    active_definition={"disks": [{"path": "/d0", "size": 10}]}, snapshots=1),
            make_vm(S.RUNNING, uuid=UUIDS[2], hostname=HOSTS[2], owner=OWNER_B, node=NODE2,
                    ostype="windows"),
        ]
        self.world = make_world(*vms)
        self.now = NOW
        self.node_clock = NOW
        self.tasks: list[Task] = []
        self.ended: set[TaskId] = set()
        self.seq: dict[str, int] = {vm.uuid: 0 for vm in vms}
        self.status: dict[str, VmStatus] = {vm.uuid: vm.status for vm in vms}
        self.last_obs: dict[str, float | None] = {vm.uuid: None for vm in vms}
        self.last_report: dict[str, VmStatus | None] = {vm.uuid: None for vm in vms}

    # -- bookkeeping of every decision ---------------------------------------------------

    def _record(self, d: Decision) -> None:
        if d.ignored is not None:
            event(f"ignored {d.ignored.value}")
        for task in d.ended:
            event(f"task {task.action.value}/{task.method} ended {task.state.value}")
        if d.new_vm is not None:
            uuid = d.new_vm.uuid
            assert uuid not in self.seq
            self.seq[uuid], self.status[uuid] = 0, S.NOTCREATED
            self.last_obs[uuid], self.last_report[uuid] = None, None
        for c in d.changes:
            uuid = c.vm.uuid
            assert c.seq == self.seq[uuid] + 1, (c, self.seq[uuid])
            assert c.previous is self.status[uuid] and c.status is not c.previous
            self.seq[uuid], self.status[uuid] = c.seq, c.status
        for task in d.ended:
            assert task.task_id not in self.ended, f"{task.task_id} ended twice"
            assert task.done and task.result is not None and task.ended is not None
            self.ended.add(task.task_id)
        if d.new_task is not None:
            assert d.new_task.task_id not in {t.task_id for t in self.tasks}
            self.tasks.append(d.new_task)

    def _pick(self, index: int) -> TaskId:
        """Mostly a pending task; else any task (late, duplicate) or an unknown id."""
        pending = [t for t in self.tasks if not t.done]
        power = [t for t in pending if _power_slot(t)]
        if power and index % 2:
            return power[index % len(power)].task_id
        if pending and index % 3:
            return pending[index % len(pending)].task_id
        if not self.tasks or index % 7 == 6:
            return TaskId("0-00000000-0000-4000-8000")  # unknown
        return self.tasks[index % len(self.tasks)].task_id

    # -- rules -----------------------------------------------------------------------------

    @rule(which=st.integers(0, 2), kind=REQUESTS, principal=PRINCIPALS, data=DATA,
          by_uuid=st.booleans(), index=st.integers(0, 1000), definition=DEFINITIONS)
    def request(self, which: int, kind: str, principal: Principal, data: dict[str, Any],
                by_uuid: bool, index: int, definition: dict[str, Any]) -> None:
        ident = UUIDS[which] if by_uuid else HOSTS[which]
        if kind in ("start", "stop", "reboot", "bogus"):
            d = req(self.world, principal, "PUT", f"/vm/{ident}/status/{kind}", data, self.now)
        elif kind == "current_put":
            d = req(self.world, principal, "PUT", f"/vm/{ident}/status/current", data, self.now)
        elif kind == "current_get":
            d = req(self.world, principal, "GET", f"/vm/{ident}/status/current", data, self.now)
        elif kind == "status":
            d = req(self.world, principal, "GET", f"/vm/{ident}/status/", data, self.now)
        elif kind == "list":
            d = req(self.world, principal, "GET", "/vm/status", data, self.now)
        elif kind == "define":
            d = req(self.world, principal, "PUT", f"/vm/{ident}/define", definition, self.now)
        else:
            d = req(self.world, principal, "GET", f"/task/{self._pick(index)}/status", {}, self.now)
        assert d.reply is not None and d.reply.code in CODES, d.reply
        event(f"{kind} -> {d.reply.code}")
        if d.reply.code >= 400:
            assert not d.changes and d.new_task is None and not d.ended
        if d.new_task is not None:
            assert d.reply.code == 201 and d.reply.body["task_id"] == d.new_task.task_id
        self._record(d)

    @rule(which=st.integers(0, 2), action=st.sampled_from(["start", "stop", "reboot"]),
          principal=st.sampled_from([ADMIN, ALICE]), force=st.booleans(),
          freeze=st.sampled_from([None, None, True, False]),
          unfreeze=st.sampled_from([None, None, True]), update=st.sampled_from([None, True]))
    def power(self, which: int, action: str, principal: Principal, force: bool,
              freeze: bool | None, unfreeze: bool | None, update: bool | None) -> None:
        """A well-formed power request, so that tasks are created often."""
        data: dict[str, Any] = {"force": force}
        for key, value in (("freeze", freeze), ("unfreeze", unfreeze), ("update", update)):
            if value is not None:
                data[key] = value
        d = req(self.world, principal, "PUT", f"/vm/{UUIDS[which]}/status/{action}", data,
                self.now)
        assert d.reply is not None and d.reply.code in CODES - {400, 405, 412}, d.reply
        event(f"power {action} -> {d.reply.code}")
        self._record(d)

    @rule(which=st.integers(0, 3), state=NODE_STATES, dt=st.floats(-30, 30),
          foreign=st.integers(0, 9))
    def observation(self, which: int, state: str | None, dt: float, foreign: int) -> None:
        self.node_clock += 1
        t = self.node_clock + dt
        if which == 3:
            uuid, node = NEW_UUID, NODE
            obj = {"hostname": "new.example", "owner_uuid": OWNER_B, "brand": "kvm"}
        else:
            uuid = UUIDS[which]
            vm = self.world.vms.get(uuid)
            assert vm is not None
            node, obj = vm.node, None
            if foreign == 0:
                node = NODE2 if node == NODE else NODE
        vm = self.world.vms.get(uuid)
        before = None if vm is None else (vm.status, vm.seq, vm.node)
        d = observe(self.world, Observation(uuid, node, state, t, obj), self.now)
        self._record(d)
        if vm is None or before is None:
            if d.new_vm is not None:
                self.last_obs[uuid], self.last_report[uuid] = t, map_node_state(state)
            return
        status, seq, old_node = before
        moved = vm.node != old_node
        if status is S.FROZEN:
            assert vm.status is S.FROZEN and vm.seq == seq and not d.changes
        last = self.last_obs[uuid]
        if not moved and last is not None and t < last:
            assert not d.changes and vm.status is status and vm.seq == seq
        if d.ignored in (None, Ignored.FROZEN):
            self.last_obs[uuid] = t
            self.last_report[uuid] = map_node_state(state)
        if moved:
            self.last_obs[uuid] = t if d.ignored is None else None

    @rule(index=st.integers(0, 1000), kind=KINDS, state=NODE_STATES, rc=st.sampled_from([0, 1]),
          dt=st.one_of(st.none(), st.floats(-30, 30)), definition=st.booleans())
    def result(self, index: int, kind: OutcomeKind, state: str | None, rc: int,
               dt: float | None, definition: bool) -> None:
        task_id = self._pick(index)
        task = self.world.tasks.get(task_id)
        change_time = None if dt is None else self.node_clock + dt
        outcome = TaskOutcome(kind, rc, "message", state, change_time,
                              {"ram": 1} if definition else None)
        d = complete_task(self.world, task_id, outcome, self.now)
        self._record(d)
        if task is None or task_id in self.ended - {t.task_id for t in d.ended}:
            assert d.dropped and not d.changes and not d.ended
            return
        assert d.ended == (task,)
        if task.action is Action.CURRENT and kind in (OutcomeKind.SUCCESS, OutcomeKind.NOT_FOUND):
            status = map_node_state(None if kind is OutcomeKind.NOT_FOUND else state)
            if status is not None and d.ignored in (None, Ignored.FROZEN):
                self.last_report[task.vm_uuid] = status
                if change_time is not None:
                    last = self.last_obs[task.vm_uuid]
                    self.last_obs[task.vm_uuid] = (
                        change_time if last is None else max(last, change_time))

    @rule(index=st.integers(0, 1000))
    def deadline(self, index: int) -> None:
        task_id = self._pick(index)
        task = self.world.tasks.get(task_id)
        already = task is None or task.done
        d = expire_task(self.world, task_id, self.now)
        if already:
            assert d.dropped
        self._record(d)

    @rule(which=st.integers(0, 2))
    def resync(self, which: int) -> None:
        self._record(start_resync(self.world, UUIDS[which], self.now))

    @rule(dt=st.floats(0, 400))
    def tick(self, dt: float) -> None:
        self.now += dt

    @rule()
    def deadlines_due(self) -> None:
        for task in self.tasks:
            if not task.done and task.deadline <= self.now:
                self._record(expire_task(self.world, task.task_id, self.now))

    @rule(node=st.sampled_from([NODE, NODE2]),
          status=st.sampled_from([NodeStatus.ONLINE, NodeStatus.ONLINE, NodeStatus.UNREACHABLE,
                                  NodeStatus.MAINTENANCE]))
    def node_status(self, node: NodeName, status: NodeStatus) -> None:
        self.world.nodes[node].status = status

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def one_power_task_per_vm(self) -> None:
        for vm in self.world.vms:
            slot = [t for t in self.world.tasks.pending_of(vm.uuid) if _power_slot(t)]
            assert len(slot) <= 1, slot
            if vm.task_id is None:
                assert slot == []
            else:
                assert [t.task_id for t in slot] == [vm.task_id]

    @invariant()
    def transitional_only_with_a_task(self) -> None:
        for vm in self.world.vms:
            if vm.status in TRANSITIONAL and vm.task_id is None:
                assert vm.status is S.STOPPING and self.last_report[vm.uuid] is S.STOPPING, (
                    vm, self.last_report[vm.uuid])

    @invariant()
    def every_task_ends_once(self) -> None:
        for task in self.tasks:
            assert task.done is (task.task_id in self.ended)

    @invariant()
    def seq_matches(self) -> None:
        for vm in self.world.vms:
            assert vm.seq == self.seq[vm.uuid] and vm.status is self.status[vm.uuid]


PowerStates.TestCase.settings = settings(
    max_examples=500, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPowerStates = PowerStates.TestCase
