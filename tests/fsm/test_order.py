"""docs/fsm.md §3.5 decision order (steps 1-9) and the power slot, one row per rule.

Each row builds a world, sends one PUT and expects (code, detail) or a 201; rows that
combine two failing rules check which one answers first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vmd.fsm import FsmSettings, replies
from vmd.fsm.world import World
from vmd.model import NodeName, NodeStatus, Principal, VmStatus

from .helpers import (
    ADMIN,
    ALICE,
    BOB,
    HOST,
    NOW,
    UUID,
    done,
    make_vm,
    make_world,
    obs,
    put,
    req,
    task_of,
    world_in,
)

S = VmStatus
RESIZE = {"update_disks": [{"path": "/dev/zvol/rdsk/zones/x-disk0", "size": 20480}]}
ACTIVE = {"disks": [{"path": "/dev/zvol/rdsk/zones/x-disk0", "size": 10240}]}
NO_RESIZE = {"ram": 2048}


def w(status: VmStatus = S.RUNNING, **kw: Any) -> Callable[[], World]:
    settings = kw.pop("settings", None)
    node_status = kw.pop("node_status", NodeStatus.ONLINE)
    return lambda: make_world(make_vm(status, **kw), node_status=node_status, settings=settings)


def setup(name: str, **kw: Any) -> Callable[[], World]:
    return lambda: world_in(name, **kw)[0]


def running_with_start_in_flight() -> World:
    """A start task in flight whose VM a node observation already moved to running."""
    world, _, _ = world_in("starting")
    obs(world, "running", NOW - 1)
    return world


def stopped_with_stop_in_flight() -> World:
    world, _, _ = world_in("stopping")
    obs(world, "stopped", NOW - 1)
    return world


def stopping_with(data: dict[str, Any], action: str = "stop") -> Callable[[], World]:
    def build() -> World:
        world, _, _ = world_in("running")
        put(world, ADMIN, action, data, now=NOW - 5)
        return world

    return build


def stopping_held_by_current() -> World:
    world, _, _ = world_in("stopping")
    put(world, ADMIN, "current", {"force": True}, now=NOW - 2)
    return world


NO_SHUT_UUID = FsmSettings(no_shutdown=frozenset({UUID}))
NO_SHUT_HOST = FsmSettings(no_shutdown=frozenset({HOST}))

ROWS = [
    # 1. not found / not visible
    pytest.param(w(), ADMIN, "start", {}, "nosuch.example.com", 404, replies.VM_NOT_FOUND,
                 id="1-unknown-vm"),
    pytest.param(w(), BOB, "stop", {}, HOST, 404, replies.VM_NOT_FOUND, id="1-foreign-owner"),
    pytest.param(w(node_status=NodeStatus.UNREACHABLE), BOB, "stop", {}, HOST, 404,
                 replies.VM_NOT_FOUND, id="1-before-2"),
    pytest.param(w(), ALICE, "stop", {}, UUID, 201, None, id="1-by-uuid"),
    # 2. node
    pytest.param(w(node_status=NodeStatus.UNREACHABLE), ADMIN, "stop", {}, HOST, 423,
                 replies.NODE_NOT_OPERATIONAL, id="2-node-unreachable"),
    pytest.param(w(node_status=NodeStatus.MAINTENANCE), ALICE, "start", {}, HOST, 423,
                 replies.NODE_NOT_OPERATIONAL, id="2-node-maintenance"),
    pytest.param(w(node=NodeName("ghost")), ADMIN, "stop", {}, HOST, 423,
                 replies.NODE_NOT_OPERATIONAL, id="2-node-unknown"),
    pytest.param(w(S.NOTCREATED, node_status=NodeStatus.UNREACHABLE), ADMIN, "nosuch", {},
                 HOST, 423, replies.NODE_NOT_OPERATIONAL, id="2-before-3-and-4"),
    # 3. VM not operational
    pytest.param(w(S.NOTCREATED), ADMIN, "nosuch", {"update": "bad"}, HOST, 423,
                 replies.VM_NOT_OPERATIONAL, id="3-notcreated-before-4"),
    pytest.param(w(S.ERROR), ADMIN, "", {}, HOST, 423, replies.VM_NOT_OPERATIONAL,
                 id="3-error-no-action"),
    # 4. bad action
    pytest.param(w(), ADMIN, "", {}, HOST, 417, replies.BAD_ACTION, id="4-no-action"),
    pytest.param(w(), ADMIN, "nosuch", {"timeout": "x"}, HOST, 417, replies.BAD_ACTION,
                 id="4-unknown-action-before-5"),
    pytest.param(w(), ADMIN, "START", {}, HOST, 417, replies.BAD_ACTION, id="4-case-sensitive"),
    # 5. parameters before the gate
    pytest.param(w(S.RUNNING), ADMIN, "start", {"update": "maybe"}, HOST, 400,
                 {"update": [replies.INVALID_BOOLEAN]}, id="5-before-6"),
    pytest.param(w(S.RUNNING, settings=NO_SHUT_UUID), ADMIN, "stop", {"timeout": -1}, HOST,
                 400, {"timeout": [replies.INVALID_INTEGER]}, id="5-before-7"),
    # 6. the gate (details in test_gate.py) before 7 and 8
    pytest.param(w(S.STOPPED, settings=NO_SHUT_UUID), ADMIN, "stop", {"freeze": True}, HOST,
                 200, None, id="6-instant-freeze-before-7"),
    pytest.param(w(S.STOPPED, settings=NO_SHUT_UUID), ADMIN, "reboot", {}, HOST, 417,
                 replies.BAD_ACTION, id="6-before-7"),
    # power slot: one task at a time, whatever an observation did meanwhile
    pytest.param(running_with_start_in_flight, ADMIN, "stop", {}, HOST, 409,
                 replies.PENDING_TASKS, id="6-slot-taken-running"),
    pytest.param(running_with_start_in_flight, ADMIN, "reboot", {"force": True}, HOST, 409,
                 replies.PENDING_TASKS, id="6-slot-taken-reboot"),
    pytest.param(running_with_start_in_flight, ADMIN, "start", {}, HOST, 417,
                 replies.BAD_ACTION, id="6-gate-before-slot"),
    pytest.param(stopped_with_stop_in_flight, ADMIN, "stop", {"freeze": True}, HOST, 409,
                 replies.PENDING_TASKS, id="6-slot-taken-instant-freeze"),
    pytest.param(stopped_with_stop_in_flight, ALICE, "stop", {"freeze": True}, HOST, 403,
                 replies.PERMISSION_DENIED, id="6-owner-freeze-403-before-slot"),
    pytest.param(stopped_with_stop_in_flight, ADMIN, "start", {}, HOST, 409,
                 replies.PENDING_TASKS, id="6-slot-taken-start"),
    pytest.param(stopping_with({"force": True}), ADMIN, "stop", {"force": True}, HOST, 423,
                 replies.ALREADY_STOPPING, id="6-forced-stop-in-flight"),
    pytest.param(stopping_with({"force": True}, "reboot"), ADMIN, "stop", {"force": True},
                 HOST, 409, replies.PENDING_TASKS, id="6-forced-reboot-in-flight"),
    pytest.param(stopping_with({}, "reboot"), ADMIN, "stop", {"force": True}, HOST, 201, None,
                 id="6-force-preempts-graceful-reboot"),
    pytest.param(stopping_held_by_current, ADMIN, "stop", {"force": True}, HOST, 409,
                 replies.PENDING_TASKS, id="6-current-in-flight"),
    # 7. no_shutdown
    pytest.param(w(settings=NO_SHUT_UUID), ADMIN, "stop", {}, HOST, 428, replies.NO_SHUTDOWN,
                 id="7-stop-by-uuid"),
    pytest.param(w(settings=NO_SHUT_HOST), ALICE, "reboot", {}, UUID, 428,
                 replies.NO_SHUTDOWN, id="7-reboot-by-hostname"),
    pytest.param(w(S.STOPPED, settings=NO_SHUT_UUID), ADMIN, "start", {}, HOST, 201, None,
                 id="7-start-allowed"),
    # 8. updates
    pytest.param(setup("stopping", pending_definition=NO_RESIZE), ADMIN, "stop",
                 {"force": True, "update": True}, HOST, 428, replies.UPDATE_WHILE_STOPPING,
                 id="8-update-while-stopping"),
    pytest.param(setup("stopping_observed", pending_definition=NO_RESIZE), ADMIN, "stop",
                 {"force": True, "update": "1"}, HOST, 428, replies.UPDATE_WHILE_STOPPING,
                 id="8-update-while-observed-stopping"),
    pytest.param(setup("stopping", pending_definition=NO_RESIZE), ADMIN, "stop",
                 {"force": True}, HOST, 201, None, id="8-stop-update-default-false"),
    pytest.param(w(S.STOPPED, pending_definition=RESIZE, active_definition=ACTIVE), ALICE,
                 "start", {}, HOST, 428, replies.UPDATE_FIRST, id="8-start-resize"),
    pytest.param(w(S.STOPPED, pending_definition=RESIZE, active_definition=ACTIVE), ALICE,
                 "start", {"update": False}, HOST, 201, None, id="8-start-no-update"),
    pytest.param(w(S.STOPPED, pending_definition=NO_RESIZE), ALICE, "start", {}, HOST, 201,
                 None, id="8-start-update-no-resize"),
    pytest.param(w(pending_definition=RESIZE, active_definition=ACTIVE, snapshots=2), ALICE,
                 "stop", {"update": True}, HOST, 417, replies.HAS_SNAPSHOTS,
                 id="8-stop-resize-snapshots"),
    pytest.param(w(pending_definition=RESIZE, active_definition=ACTIVE, snapshots=1), ALICE,
                 "reboot", {}, HOST, 417, replies.HAS_SNAPSHOTS,
                 id="8-reboot-resize-snapshots"),
    pytest.param(w(pending_definition=RESIZE, active_definition=ACTIVE), ALICE, "reboot", {},
                 HOST, 201, None, id="8-reboot-resize-no-snapshots"),
    pytest.param(w(pending_definition=RESIZE, active_definition=ACTIVE, snapshots=1), ALICE,
                 "stop", {}, HOST, 201, None, id="8-stop-resize-no-update"),
    pytest.param(w(pending_definition=RESIZE, active_definition=ACTIVE, snapshots=1,
                   settings=NO_SHUT_HOST), ALICE, "reboot", {}, HOST, 428, replies.NO_SHUTDOWN,
                 id="7-before-8"),
]


@pytest.mark.parametrize(("build", "principal", "action", "data", "ident", "code", "expect"),
                         ROWS)
def test_order(build: Callable[[], World], principal: Principal, action: str,
               data: dict[str, Any], ident: str, code: int, expect: Any) -> None:
    world = build()
    vm = world.vms.by_hostname[HOST]
    before = (vm.status, vm.seq, vm.task_id)
    d = put(world, principal, action, data, ident=ident)
    assert d.reply is not None
    assert d.reply.code == code, d.reply
    if code == 400:
        assert d.reply.body["status"] == "FAILURE" and d.reply.body["result"] == expect
        assert world.tasks.get(d.reply.body["task_id"]) is None
    elif isinstance(expect, str):
        assert d.reply.body == {"detail": expect}
    if code >= 400:
        assert (vm.status, vm.seq, vm.task_id) == before and not d.changes and not d.new_task


def test_update_payload_goes_with_the_task() -> None:
    world = make_world(make_vm(S.STOPPED, pending_definition=NO_RESIZE))
    task = task_of(world, put(world, ALICE, "start"))
    assert task.params["update"] is True and task.params["definition"] == NO_RESIZE
    world2 = make_world(make_vm(S.STOPPED))
    task2 = task_of(world2, put(world2, ALICE, "start"))
    assert task2.params["update"] is False and "definition" not in task2.params


def test_update_clears_pending_definition_on_success() -> None:
    vm = make_vm(S.RUNNING, pending_definition=NO_RESIZE)
    world = make_world(vm)
    task = task_of(world, put(world, ADMIN, "reboot"))
    new = {"ram": 2048, "disks": []}
    done(world, task.task_id, definition=new)
    assert vm.pending_definition is None and vm.active_definition == new
    assert vm.status is S.RUNNING


def test_update_keeps_a_newer_staged_definition() -> None:
    vm = make_vm(S.RUNNING, pending_definition=NO_RESIZE)
    world = make_world(vm)
    task = task_of(world, put(world, ADMIN, "reboot"))
    put_define = {"ram": 4096}
    d = req(world, ADMIN, "PUT", f"/vm/{HOST}/define", put_define)
    assert d.reply is not None and d.reply.code == 200
    done(world, task.task_id, definition={"ram": 2048})
    assert vm.pending_definition == put_define
