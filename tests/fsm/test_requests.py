"""docs/fsm.md §3.1-§3.4, §6, §7: list, status, current (GET/PUT), define, task status."""

from __future__ import annotations

from typing import Any

import pytest

from vmd.fsm import is_task_id, iso_time, replies
from vmd.fsm.params import parse_order_by
from vmd.model import NodeStatus, OutcomeKind, Principal, TaskState, VmStatus

from .helpers import (
    ADMIN,
    ALICE,
    BOB,
    HOST,
    NODE,
    NOW,
    OWNER_B,
    UUID,
    done,
    make_vm,
    make_world,
    put,
    req,
    task_of,
    world_in,
)

S = VmStatus
KEYS = {"hostname", "uuid", "alias", "status", "status_change", "node_status", "tasks"}


def fleet() -> Any:
    vms = [
        make_vm(S.RUNNING, uuid="00000000-0000-4000-8000-00000000000c", hostname="c.example",
                status_change=NOW - 10),
        make_vm(S.STOPPED, uuid="00000000-0000-4000-8000-00000000000a", hostname="a.example",
                status_change=NOW - 30),
        make_vm(S.FROZEN, uuid="00000000-0000-4000-8000-00000000000b", hostname="b.example",
                owner=OWNER_B, status_change=None),
        make_vm(S.ERROR, uuid="00000000-0000-4000-8000-00000000000d", hostname="d.example",
                status_change=NOW - 20),
    ]
    vms[0].alias, vms[1].alias, vms[2].alias, vms[3].alias = "zeta", "beta", "alpha", "beta"
    return make_world(*vms)


def hostnames(world: Any, principal: Principal, order_by: Any = None) -> list[str]:
    data = {} if order_by is None else {"order_by": order_by}
    d = req(world, principal, "GET", "/vm/status", data)
    assert d.reply is not None and d.reply.code == 200, d.reply
    return [o["hostname"] for o in d.reply.body["result"]]


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        pytest.param(None, "abcd", id="default-hostname"),
        pytest.param("hostname", "abcd", id="hostname"),
        pytest.param("-hostname", "dcba", id="desc"),
        pytest.param("+hostname", "abcd", id="plus-is-ascending"),
        pytest.param(" -hostname ", "dcba", id="blanks"),
        pytest.param("", "abcd", id="empty-is-default"),
        pytest.param("alias,hostname", "badc", id="alias-then-hostname"),
        pytest.param("alias,-hostname", "bdac", id="mixed-directions"),
        pytest.param("status", "dbca", id="status"),
        pytest.param("-status,hostname", "acbd", id="status-desc"),
        pytest.param("status_change", "badc", id="status-change-null-first"),
        pytest.param("-status_change", "cdab", id="status-change-desc"),
        pytest.param("uuid", "abcd", id="uuid"),
        pytest.param("-uuid", "dcba", id="uuid-desc"),
        pytest.param(["-alias", "hostname"], "cadb", id="json-list"),
    ],
)
def test_list_order(order_by: Any, expected: str) -> None:
    assert "".join(h[0] for h in hostnames(fleet(), ADMIN, order_by)) == expected


@pytest.mark.parametrize(
    "order_by",
    [pytest.param(v, id=str(v)) for v in ["name", "hostname,size", "-", "--hostname",
                                           "host name", 5, {"a": 1}, ["hostname", 3], True]],
)
def test_list_bad_order_by_412(order_by: Any) -> None:
    d = req(fleet(), ADMIN, "GET", "/vm/status", {"order_by": order_by})
    assert d.reply is not None and d.reply.code == 412
    assert d.reply.body == {"detail": replies.INVALID_ORDER_BY}


def test_parse_order_by() -> None:
    assert parse_order_by("-status, +uuid") == [("status", True), ("uuid", False)]
    assert parse_order_by(None) == [("hostname", False)]


def test_list_visibility_and_shape() -> None:
    world = fleet()
    assert hostnames(world, ALICE) == ["a.example", "c.example", "d.example"]
    assert hostnames(world, BOB) == ["b.example"]
    assert hostnames(world, Principal("nobody")) == []
    d = req(world, ADMIN, "GET", "/vm/status/")
    assert d.reply is not None
    body = d.reply.body
    assert body["status"] == "SUCCESS" and is_task_id(body["task_id"])
    for obj in body["result"]:
        assert set(obj) == KEYS and obj["node_status"] == "online" and obj["tasks"] == {}
    by_host = {o["hostname"]: o for o in body["result"]}
    assert by_host["b.example"]["status_change"] is None
    assert by_host["b.example"]["status"] == "frozen"
    assert by_host["a.example"]["status_change"] == iso_time(NOW - 30)


@pytest.mark.parametrize(
    ("t", "text"),
    [
        pytest.param(0.0, "1970-01-01T00:00:00.000Z", id="epoch"),
        pytest.param(1_354_317_803.3659, "2012-11-30T23:23:23.365Z", id="truncates"),
        pytest.param(1_800_000_000.9999, "2027-01-15T08:00:00.999Z", id="no-round-up"),
        pytest.param(-0.5, "1969-12-31T23:59:59.500Z", id="negative"),
        pytest.param(None, None, id="none"),
    ],
)
def test_iso_time(t: float | None, text: str | None) -> None:
    assert iso_time(t) == text


def test_status_shows_pending_tasks_and_node() -> None:
    world, _, task = world_in("stopping")
    cur = task_of(world, req(world, ALICE, "GET", f"/vm/{HOST}/status/current"))
    world.nodes[NODE].status = NodeStatus.MAINTENANCE
    d = req(world, ALICE, "GET", f"/vm/{UUID}/status")
    assert d.reply is not None and d.reply.code == 200
    obj = d.reply.body["result"]
    assert set(obj) == KEYS and obj["status"] == "stopping" and obj["node_status"] == "maintenance"
    assert task is not None
    assert obj["tasks"] == {
        task.task_id: {"action": "stop", "method": "PUT", "time": iso_time(task.created)},
        cur.task_id: {"action": "current", "method": "GET", "time": iso_time(cur.created)},
    }
    done(world, task.task_id)
    d = req(world, ALICE, "GET", f"/vm/{UUID}/status")
    assert d.reply is not None and list(d.reply.body["result"]["tasks"]) == [cur.task_id]


def test_status_not_found_and_hostname_wins() -> None:
    a = make_vm(uuid="00000000-0000-4000-8000-00000000000a", hostname="a.example")
    # b's hostname is a's uuid: the hostname match wins.
    b = make_vm(uuid="00000000-0000-4000-8000-00000000000b", hostname=a.uuid)
    c = make_vm(uuid="00000000-0000-4000-8000-00000000000c", hostname="c.example",
                owner=OWNER_B)
    world = make_world(a, b, c)

    def who(principal: Principal, ident: str) -> Any:
        d = req(world, principal, "GET", f"/vm/{ident}/status")
        assert d.reply is not None
        return d.reply.body["result"]["uuid"] if d.reply.code == 200 else d.reply.body

    assert who(ADMIN, a.uuid) == b.uuid
    assert who(ADMIN, "a.example") == a.uuid
    assert who(ALICE, "c.example") == {"detail": replies.VM_NOT_FOUND}
    assert who(ALICE, c.uuid) == {"detail": replies.VM_NOT_FOUND}
    assert who(BOB, "c.example") == c.uuid
    assert who(ADMIN, "nosuch") == {"detail": "VM not found"}
    # A hostname the principal may not see does not hide a visible VM with that uuid.
    c.hostname = b.uuid
    world.vms.add(c)
    assert who(ALICE, b.uuid) == b.uuid


# -- GET /vm/<vm>/status/current (§3.3) -------------------------------------------------

@pytest.mark.parametrize(
    ("setup", "node_status", "principal", "code", "detail"),
    [
        pytest.param("running", NodeStatus.ONLINE, ALICE, 201, None, id="running"),
        pytest.param("stopped", NodeStatus.ONLINE, ALICE, 201, None, id="stopped"),
        pytest.param("starting", NodeStatus.ONLINE, ALICE, 201, None, id="starting"),
        pytest.param("stopping", NodeStatus.ONLINE, ADMIN, 201, None, id="stopping"),
        pytest.param("error", NodeStatus.ONLINE, ALICE, 201, None, id="error"),
        pytest.param("frozen", NodeStatus.ONLINE, ALICE, 423, replies.VM_NOT_OPERATIONAL,
                     id="frozen"),
        pytest.param("notcreated", NodeStatus.UNREACHABLE, ALICE, 423,
                     replies.VM_NOT_OPERATIONAL, id="notcreated-before-node"),
        pytest.param("running", NodeStatus.UNREACHABLE, ALICE, 423,
                     replies.NODE_NOT_OPERATIONAL, id="node-down"),
        pytest.param("running", NodeStatus.UNREACHABLE, BOB, 404, replies.VM_NOT_FOUND,
                     id="foreign"),
    ],
)
def test_get_current(setup: str, node_status: NodeStatus, principal: Principal, code: int,
                     detail: str | None) -> None:
    world, vm, inflight = world_in(setup)
    world.nodes[NODE].status = node_status
    d = req(world, principal, "GET", f"/vm/{HOST}/status/current")
    assert d.reply is not None and d.reply.code == code, d.reply
    if code == 201:
        task = task_of(world, d)
        assert d.reply.body == {"status": "PENDING", "result": None, "task_id": task.task_id}
        assert task.method == "GET" and task.action.value == "current"
        assert task.deadline == NOW + 30
        assert vm.task_id == (None if inflight is None else inflight.task_id)  # not the slot
    else:
        assert d.reply.body == {"detail": detail} and d.new_task is None


# -- PUT /vm/<vm>/status/current (§3.4) -------------------------------------------------

@pytest.mark.parametrize(
    ("setup", "node_status", "principal", "data", "code", "detail"),
    [
        pytest.param("running", NodeStatus.ONLINE, ADMIN, {}, 201, None, id="running"),
        pytest.param("error", NodeStatus.ONLINE, ADMIN, {}, 201, None, id="error"),
        pytest.param("running", NodeStatus.ONLINE, BOB, {}, 404, replies.VM_NOT_FOUND,
                     id="foreign-404"),
        pytest.param("running", NodeStatus.UNREACHABLE, ALICE, {}, 423,
                     replies.NODE_NOT_OPERATIONAL, id="node-before-403"),
        pytest.param("running", NodeStatus.ONLINE, ALICE, {"force": True}, 403,
                     replies.PERMISSION_DENIED, id="owner-403"),
        pytest.param("stopping", NodeStatus.ONLINE, ADMIN, {}, 428, replies.FORCE_REQUIRED,
                     id="stopping-needs-force"),
        pytest.param("starting", NodeStatus.ONLINE, ADMIN, {"force": "false"}, 428,
                     replies.FORCE_REQUIRED, id="starting-needs-force"),
        pytest.param("stopping_observed", NodeStatus.ONLINE, ADMIN, {}, 428,
                     replies.FORCE_REQUIRED, id="observed-stopping-needs-force"),
        pytest.param("frozen", NodeStatus.ONLINE, ADMIN, {}, 423, replies.VM_NOT_OPERATIONAL,
                     id="frozen"),
        pytest.param("notcreated", NodeStatus.ONLINE, ADMIN, {}, 423,
                     replies.VM_NOT_OPERATIONAL, id="notcreated"),
        pytest.param("frozen", NodeStatus.ONLINE, ADMIN, {"force": True}, 201, None,
                     id="frozen-forced"),
        pytest.param("notcreated", NodeStatus.ONLINE, ADMIN, {"force": 1}, 201, None,
                     id="notcreated-forced"),
        pytest.param("stopping", NodeStatus.ONLINE, ADMIN, {"force": "TRUE"}, 201, None,
                     id="stopping-forced"),
        pytest.param("running", NodeStatus.ONLINE, ADMIN, {"force": "x"}, 400, None,
                     id="bad-force"),
    ],
)
def test_put_current(setup: str, node_status: NodeStatus, principal: Principal,
                     data: dict[str, Any], code: int, detail: str | None) -> None:
    world, vm, inflight = world_in(setup)
    world.nodes[NODE].status = node_status
    d = put(world, principal, "current", data)
    assert d.reply is not None and d.reply.code == code, d.reply
    if code == 201:
        task = task_of(world, d)
        assert vm.task_id == task.task_id and task.method == "PUT"
        if inflight is not None:
            assert d.ended == (inflight,) and inflight.state is TaskState.REVOKED
            assert inflight.result == {"message": "Superseded by forced status change",
                                       "detail": "Superseded by forced status change"}
            assert task.params["holds"] == vm.status.value
            assert task.previous_status == inflight.previous_status
    elif code == 400:
        assert d.reply.body["result"] == {"force": [replies.INVALID_BOOLEAN]}
    else:
        assert d.reply.body == {"detail": detail} and d.new_task is None


# -- PUT /vm/<vm>/define (§6) -----------------------------------------------------------

def test_define() -> None:
    vm = make_vm(active_definition={"disks": [{"path": "/d0", "size": 10}]})
    world = make_world(vm)
    d = req(world, ALICE, "PUT", f"/vm/{HOST}/define", {"ram": 1})
    assert d.reply is not None and d.reply.code == 403 and vm.pending_definition is None
    d = req(world, BOB, "PUT", f"/vm/{HOST}/define", {"ram": 1})
    assert d.reply is not None and d.reply.code == 404
    data = {"update_disks": [{"path": "/d0", "size": 20}]}
    d = req(world, ADMIN, "PUT", f"/vm/{HOST}/define/", data)
    assert d.reply is not None and d.reply.code == 200 and d.vm is vm
    assert d.reply.body["result"] == {"hostname": HOST, "uuid": UUID,
                                      "pending_definition": data, "disk_resize": True}
    assert vm.pending_definition == data and vm.pending_definition is not data
    d = req(world, ADMIN, "PUT", f"/vm/{HOST}/define", {})
    assert vm.pending_definition is None


# -- GET /task/<task_id>/status (§7) ----------------------------------------------------

@pytest.mark.parametrize(
    ("kind", "code", "state", "result"),
    [
        pytest.param(None, 201, "PENDING", None, id="pending"),
        pytest.param(OutcomeKind.SUCCESS, 200, "SUCCESS",
                     {"returncode": 0, "message": "Successfully completed stop for VM " + HOST},
                     id="success"),
        pytest.param(OutcomeKind.FAILURE, 400, "FAILURE",
                     {"returncode": 1, "message": "boom",
                      "detail": "Got bad return code (1). Error: boom"}, id="failure"),
        pytest.param("expire", 410, "REVOKED",
                     {"message": "Task deadline exceeded", "detail": "Task deadline exceeded"},
                     id="revoked"),
    ],
)
def test_task_status(kind: Any, code: int, state: str, result: Any) -> None:
    world, _, task = world_in("stopping")
    assert task is not None
    if kind == "expire":
        from vmd.fsm import expire_task

        expire_task(world, task.task_id, NOW + 1000)
    elif kind is OutcomeKind.SUCCESS:
        done(world, task.task_id, message="Successfully completed stop for VM " + HOST)
    elif kind is OutcomeKind.FAILURE:
        done(world, task.task_id, kind, 1, "boom")
    for principal in (ADMIN, ALICE):
        d = req(world, principal, "GET", f"/task/{task.task_id}/status")
        assert d.reply is not None and d.reply.code == code
        assert d.reply.body == {"status": state, "result": result, "task_id": task.task_id}
    for principal in (BOB, Principal("nobody")):
        d = req(world, principal, "GET", f"/task/{task.task_id}/status/")
        assert d.reply is not None and d.reply.code == 404
        assert d.reply.body == {"detail": "Task does not exist (anymore)"}


def test_unknown_and_dummy_task_ids_are_404() -> None:
    world, _, _ = world_in("running")
    d = req(world, ADMIN, "GET", f"/vm/{HOST}/status")
    assert d.reply is not None
    for task_id in (d.reply.body["task_id"], "0-00000000-0000-4000-8000", "nonsense"):
        d = req(world, ADMIN, "GET", f"/task/{task_id}/status")
        assert d.reply is not None and d.reply.code == 404
        assert d.reply.body == {"detail": replies.TASK_NOT_FOUND}
