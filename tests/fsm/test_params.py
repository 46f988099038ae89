"""docs/fsm.md §3.5 parameter table: accepted forms, field errors, defaults, deadlines."""

from __future__ import annotations

from typing import Any

import pytest

from vmd.fsm import FsmSettings, is_task_id, replies
from vmd.fsm.params import parse_bool, parse_timeout
from vmd.model import VmStatus

from .helpers import ADMIN, ALICE, NOW, make_vm, make_world, put, task_of, world_in

S = VmStatus


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(True, True, id="json-true"),
        pytest.param(False, False, id="json-false"),
        pytest.param(1, True, id="int-1"),
        pytest.param(0, False, id="int-0"),
        pytest.param("true", True, id="str-true"),
        pytest.param("True", True, id="str-True"),
        pytest.param("TRUE", True, id="str-TRUE"),
        pytest.param("tRuE", True, id="str-mixed-true"),
        pytest.param("false", False, id="str-false"),
        pytest.param("False", False, id="str-False"),
        pytest.param("FALSE", False, id="str-FALSE"),
        pytest.param("1", True, id="str-1"),
        pytest.param("0", False, id="str-0"),
        pytest.param("yes", None, id="reject-yes"),
        pytest.param("t", None, id="reject-t"),
        pytest.param("", None, id="reject-empty"),
        pytest.param(" true", None, id="reject-blank"),
        pytest.param(2, None, id="reject-int-2"),
        pytest.param(-1, None, id="reject-int-minus"),
        pytest.param(1.0, None, id="reject-float"),
        pytest.param(None, None, id="reject-null"),
        pytest.param([], None, id="reject-list"),
        pytest.param({}, None, id="reject-object"),
    ],
)
def test_parse_bool(value: Any, expected: bool | None) -> None:
    assert parse_bool(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(0, 0, id="zero"),
        pytest.param(60, 60, id="int"),
        pytest.param(3600, 3600, id="max"),
        pytest.param("120", 120, id="digits"),
        pytest.param("0060", 60, id="leading-zeros"),
        pytest.param(90.0, 90, id="integral-float"),
        pytest.param(3601, None, id="over-max"),
        pytest.param(-1, None, id="negative"),
        pytest.param("-5", None, id="negative-str"),
        pytest.param("1.5", None, id="decimal-str"),
        pytest.param(1.5, None, id="fraction"),
        pytest.param("abc", None, id="letters"),
        pytest.param("", None, id="empty"),
        pytest.param(" 60", None, id="blank"),
        pytest.param("٣", None, id="non-ascii-digit"),
        pytest.param(True, None, id="bool"),
        pytest.param(None, None, id="null"),
    ],
)
def test_parse_timeout(value: Any, expected: int | None) -> None:
    assert parse_timeout(value) == expected


BOOL_FIELDS = [
    pytest.param("stop", "force", id="stop-force"),
    pytest.param("stop", "freeze", id="stop-freeze"),
    pytest.param("stop", "unfreeze", id="stop-unfreeze"),
    pytest.param("stop", "update", id="stop-update"),
    pytest.param("reboot", "force", id="reboot-force"),
    pytest.param("reboot", "update", id="reboot-update"),
    pytest.param("start", "update", id="start-update"),
    pytest.param("start", "cdimage_once", id="start-cdimage_once"),
]


@pytest.mark.parametrize(("action", "field"), BOOL_FIELDS)
def test_bad_boolean_is_a_field_error(action: str, field: str) -> None:
    world, vm, _ = world_in("stopped" if action == "start" else "running")
    d = put(world, ALICE, action, {field: "nope"})
    assert d.reply is not None and d.reply.code == 400
    body = d.reply.body
    assert body["status"] == "FAILURE" and body["result"] == {field: [replies.INVALID_BOOLEAN]}
    assert is_task_id(body["task_id"]) and vm.seq == 0 and d.new_task is None


def test_every_bad_field_at_once() -> None:
    world, _, _ = world_in("running")
    d = put(world, ALICE, "stop", {"force": "x", "timeout": "y", "freeze": None, "foo": "z"})
    assert d.reply is not None and d.reply.code == 400
    assert d.reply.body["result"] == {
        "force": [replies.INVALID_BOOLEAN],
        "timeout": [replies.INVALID_INTEGER],
        "freeze": [replies.INVALID_BOOLEAN],
    }


@pytest.mark.parametrize(
    ("action", "data"),
    [
        pytest.param("start", {"force": "banana", "timeout": "x", "freeze": 7}, id="start"),
        pytest.param("stop", {"cdimage": "nosuch.iso", "cdimage_once": "x"}, id="stop"),
        pytest.param("reboot", {"freeze": "x", "unfreeze": "y", "cdimage2": 1}, id="reboot"),
    ],
)
def test_other_actions_keys_are_ignored(action: str, data: dict[str, Any]) -> None:
    world, _, _ = world_in("stopped" if action == "start" else "running")
    d = put(world, ALICE, action, data)
    assert d.reply is not None and d.reply.code == 201


@pytest.mark.parametrize(
    ("action", "data", "expected"),
    [
        pytest.param("start", {}, {"update": True, "cdimage": None, "cdimage_once": True,
                                   "cdimage2": None}, id="start-defaults"),
        pytest.param("stop", {}, {"update": False, "force": False, "timeout": 180,
                                  "freeze": False}, id="stop-defaults"),
        pytest.param("reboot", {}, {"update": True, "force": False, "timeout": 180},
                     id="reboot-defaults"),
        pytest.param("stop", {"timeout": "60", "update": "TRUE"},
                     {"update": False, "timeout": 60}, id="stop-timeout-digits"),
        pytest.param("stop", {"timeout": 0}, {"timeout": 0}, id="stop-timeout-zero"),
        pytest.param("stop", {"force": 1, "timeout": 60}, {"force": True, "timeout": None},
                     id="stop-force-drops-timeout"),
        pytest.param("reboot", {"update": 0}, {"update": False}, id="reboot-update-0"),
        pytest.param("start", {"cdimage": "debian.iso"},
                     {"cdimage": "debian.iso", "cdimage_once": True}, id="start-cdimage"),
        pytest.param("start", {"cdimage": "debian.iso", "cdimage_once": "false",
                               "cdimage2": "virtio.iso"},
                     {"cdimage_once": False, "cdimage2": "virtio.iso"}, id="start-cdimage2"),
        pytest.param("start", {"cdimage": None, "cdimage2": None}, {"cdimage": None},
                     id="start-cdimage-null"),
    ],
)
def test_task_params(action: str, data: dict[str, Any], expected: dict[str, Any]) -> None:
    world, _, _ = world_in("stopped" if action == "start" else "running")
    task = task_of(world, put(world, ALICE, action, data))
    for key, value in expected.items():
        if key == "update":  # effective update: nothing is pending here
            assert task.params[key] is False
        else:
            assert task.params[key] == value, key


@pytest.mark.parametrize(
    ("data", "errors"),
    [
        pytest.param({"cdimage": "nosuch.iso"},
                     {"cdimage": [replies.invalid_choice("nosuch.iso")]}, id="unknown-iso"),
        pytest.param({"cdimage": 5}, {"cdimage": [replies.invalid_choice(5)]}, id="not-a-name"),
        pytest.param({"cdimage2": "virtio.iso"},
                     {"cdimage2": [replies.CDIMAGE2_WITHOUT_CDIMAGE]}, id="cdimage2-alone"),
        pytest.param({"cdimage": "debian.iso", "cdimage2": "nosuch.iso"},
                     {"cdimage2": [replies.invalid_choice("nosuch.iso")]}, id="bad-cdimage2"),
        pytest.param({"cdimage": "x.iso", "cdimage2": "virtio.iso", "cdimage_once": "?"},
                     {"cdimage": [replies.invalid_choice("x.iso")],
                      "cdimage_once": [replies.INVALID_BOOLEAN]}, id="several"),
    ],
)
def test_cdimage_errors(data: dict[str, Any], errors: dict[str, list[str]]) -> None:
    world, _, _ = world_in("stopped")
    d = put(world, ALICE, "start", data)
    assert d.reply is not None and d.reply.code == 400
    assert d.reply.body["result"] == errors


def test_exact_cdimage_message() -> None:
    assert replies.invalid_choice("a.iso") == (
        "Select a valid choice. a.iso is not one of the available choices.")


@pytest.mark.parametrize(
    ("brand", "ostype", "data", "timeout", "deadline"),
    [
        pytest.param("kvm", None, {}, 180, 180 + 150, id="kvm-default"),
        pytest.param("kvm", "windows", {}, 300, 300 + 150, id="windows-default"),
        pytest.param("bhyve", "Windows", {}, 300, 300 + 150, id="windows-any-case"),
        pytest.param("kvm", "windows", {"timeout": 30}, 30, 30 + 150, id="windows-explicit"),
        pytest.param("kvm", None, {"timeout": 0}, 0, 180 + 150, id="zero-means-vmadm-default"),
        pytest.param("kvm", None, {"force": True}, None, 180 + 150, id="forced"),
        pytest.param("joyent", None, {}, None, 180 + 150, id="zone-no-timeout"),
        pytest.param("lx", None, {"timeout": "garbage"}, None, 180 + 150,
                     id="zone-timeout-ignored"),
    ],
)
def test_stop_timeout_and_deadline(
    brand: str, ostype: str | None, data: dict[str, Any], timeout: int | None, deadline: float
) -> None:
    world = make_world(make_vm(S.RUNNING, brand=brand, ostype=ostype))
    task = task_of(world, put(world, ALICE, "stop", data))
    assert task.params["timeout"] == timeout
    assert task.deadline == NOW + deadline and task.created == NOW


def test_other_deadlines_follow_settings() -> None:
    settings = FsmSettings(start_deadline=100, stop_grace=10, current_deadline=5,
                           stop_timeout=20, stop_timeout_windows=40)
    world = make_world(make_vm(S.STOPPED), settings=settings)
    assert task_of(world, put(world, ALICE, "start")).deadline == NOW + 100
    world = make_world(make_vm(S.RUNNING, ostype="windows"), settings=settings)
    assert task_of(world, put(world, ALICE, "reboot")).deadline == NOW + 40 + 10
    assert task_of(world, put(world, ADMIN, "current", {"force": True})).deadline == NOW + 5
