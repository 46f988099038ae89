"""docs/asyncapi.yaml is parsed and checked against the code's names and event bodies, so the
published document cannot drift from what vmd sends (issue #5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vmd.bus import topology
from vmd.daemon.nodes import node_routing_key
from vmd.fsm import status_event, status_routing_key, task_event, task_routing_key
from vmd.fsm.decision import StatusChange
from vmd.model import (
    Action,
    Cause,
    NodeName,
    NodeStatus,
    Task,
    TaskId,
    TaskState,
    Vm,
    VmStatus,
    VmUuid,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.yaml"
UUID = VmUuid("5d1a1b4e-1b7c-4b2e-9a8f-000000000001")
OWNER = "8a1a4e6c-0000-4000-8000-000000000001"
TASK = TaskId("0-a2327793-2600-423d-9f07")


def load() -> dict[str, Any]:
    doc = yaml.safe_load(DOC.read_text())
    assert isinstance(doc, dict)
    return doc


def payload(doc: dict[str, Any], message: str) -> dict[str, Any]:
    schema = doc["components"]["messages"][message]["payload"]
    assert isinstance(schema, dict)
    return schema


def fill(address: str, **values: str) -> str:
    return address.format(**values)


def test_document_is_asyncapi_3_with_every_public_channel() -> None:
    doc = load()
    assert str(doc["asyncapi"]).startswith("3.")
    assert set(doc["channels"]) == {"commands", "replies", "deadLetters", "vmStatusChange",
                                    "taskDone", "nodeStatus"}
    for op in doc["operations"].values():
        ref = op["channel"]["$ref"]
        assert ref.split("/")[-1] in doc["channels"], ref


def test_broker_names_match_the_code() -> None:
    ch = load()["channels"]
    assert ch["commands"]["address"] == topology.COMMANDS_EXCHANGE
    assert ch["commands"]["bindings"]["amqp"]["exchange"]["name"] == topology.COMMANDS_EXCHANGE
    assert topology.COMMAND_ROUTING_KEY in ch["commands"]["description"]
    assert f"{topology.STREAM_HEADER}: true" in ch["commands"]["description"]
    assert ch["deadLetters"]["address"] == topology.DEAD_QUEUE
    for name in ("vmStatusChange", "taskDone", "nodeStatus"):
        assert ch[name]["bindings"]["amqp"]["exchange"]["name"] == topology.EVENTS_EXCHANGE
        assert ch[name]["bindings"]["amqp"]["exchange"]["type"] == "topic"
    doc = load()
    assert topology.CODE_HEADER in doc["components"]["messages"]["reply"]["headers"]["required"]
    assert topology.ERROR_HEADER in doc["components"]["messages"]["deadLetter"]["headers"][
        "required"]


def test_routing_key_templates_match_the_code() -> None:
    ch = load()["channels"]
    vm = Vm(uuid=UUID, hostname="web01.example.com", alias="web01", owner_uuid=OWNER,
            node=NodeName("node1"))
    change = StatusChange(vm, VmStatus.STOPPED, VmStatus.STARTING, 1.0, Cause.TASK, TASK, 1)
    assert status_routing_key(change) == fill(ch["vmStatusChange"]["address"],
                                              owner_uuid=OWNER, uuid=UUID)
    task = Task(task_id=TASK, vm_uuid=UUID, action=Action.START, method="PUT", params={},
                created=0.0, deadline=1.0, owner_uuid=OWNER, node=NodeName("node1"))
    assert task_routing_key(task) == fill(ch["taskDone"]["address"], owner_uuid=OWNER,
                                          task_id=TASK)
    assert node_routing_key(NodeName("node1")) == fill(ch["nodeStatus"]["address"],
                                                       node="node1")


def test_event_bodies_match_their_schemas() -> None:
    doc = load()
    vm = Vm(uuid=UUID, hostname="web01.example.com", alias="web01", owner_uuid=OWNER,
            node=NodeName("node1"))
    change = StatusChange(vm, VmStatus.STOPPED, VmStatus.STARTING, 1.0, Cause.TASK, TASK, 1)
    body = status_event(change)
    schema = payload(doc, "statusChange")
    assert set(body) == set(schema["required"]) == set(schema["properties"])
    task = Task(task_id=TASK, vm_uuid=UUID, action=Action.START, method="PUT", params={},
                created=0.0, deadline=1.0, owner_uuid=OWNER, state=TaskState.SUCCESS,
                result={"returncode": 0, "message": "ok"})
    body = task_event(task, "web01.example.com")
    schema = payload(doc, "taskDone")
    assert set(body) == set(schema["required"]) == set(schema["properties"])


def test_enumerations_match_the_model() -> None:
    doc = load()
    schemas = doc["components"]["schemas"]
    assert schemas["vmStatus"]["enum"] == [s.value for s in VmStatus]
    assert schemas["nodeStatus"]["enum"] == [s.value for s in NodeStatus]
    change = payload(doc, "statusChange")["properties"]
    assert change["cause"]["enum"] == [c.value for c in Cause]
    done = payload(doc, "taskDone")["properties"]
    assert done["action"]["enum"] == [a.value for a in Action]
    assert done["status"]["enum"] == [s.value for s in TaskState if s is not TaskState.PENDING]
    assert set(payload(doc, "nodeStatus")["required"]) == {"node", "status", "previous", "time"}


def test_the_bounds_of_issue_12_are_documented() -> None:
    """429 (a vmd extension), the reply_to rule and the message_id limit, as the code has them."""
    from vmd.daemon.requests import MAX_MESSAGE_ID, REPLY_TO_NOT_ALLOWED
    from vmd.fsm.replies import TOO_MANY_TASKS

    doc = load()
    code = payload(doc, "reply")["properties"]["code"]["description"]
    assert f"429 `{TOO_MANY_TASKS}`" in code
    ch = doc["channels"]
    assert REPLY_TO_NOT_ALLOWED in ch["replies"]["description"]
    assert REPLY_TO_NOT_ALLOWED in ch["deadLetters"]["description"]
    assert f"at most {MAX_MESSAGE_ID} characters" in ch["commands"]["description"]


def test_the_500_and_its_dead_letters_are_documented() -> None:
    """Issue 12: what vmd answers and dead-letters instead of dying (vmd.daemon.poison)."""
    from vmd.daemon.commit import INTERNAL_ERROR, UNENCODABLE_REASON

    doc = load()
    code = payload(doc, "reply")["properties"]["code"]["description"]
    assert f"500 `{INTERNAL_ERROR.body['detail']}`" in code
    dead = doc["channels"]["deadLetters"]["description"]
    assert UNENCODABLE_REASON in dead
    assert "delivery limit exceeded (redelivered" in dead
