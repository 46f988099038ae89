"""The agent protocol's schemas: every message survives a round trip; bad ones say why."""

from __future__ import annotations

from typing import Any

import pytest

from vmd.bus import (
    AgentTask,
    FullSync,
    Heartbeat,
    IsoList,
    ObservationReport,
    ProtocolError,
    ResultBatch,
    SyncRequest,
    TaskResult,
)
from vmd.bus.agent_messages import order_from_json, report_from_json, to_json
from vmd.bus.codec import decode_object, encode
from vmd.model import (
    Action,
    NodeName,
    Observation,
    OutcomeKind,
    TaskId,
    TaskOutcome,
    VmUuid,
)

NODE = NodeName("node1")
UUID = VmUuid("8a1a4e6c-0000-4000-8000-00000000aaaa")
TASK = AgentTask(
    task_id=TaskId("0-a2327793-2600-423d-9f07"),
    uuid=UUID,
    hostname="web01.example.com",
    node=NODE,
    action=Action.STOP,
    params={"force": False, "timeout": 180},
    created=1000.0,
    deadline=1330.0,
)
OBS = Observation(uuid=UUID, node=NODE, state="running", change_time=1001.5, vm={"alias": "w"})
GONE = Observation(
    uuid=VmUuid("8a1a4e6c-0000-4000-8000-00000000bbbb"), node=NODE, state=None, change_time=1002.0
)

STOPPED = Observation(uuid=UUID, node=NODE, state="stopped", change_time=1009.0, vm={"a": 1})
CARRYING = TaskResult(TASK.task_id, UUID, NODE, Action.STOP,
                      TaskOutcome(OutcomeKind.SUCCESS, 0, "stopped"), 1010.0, (OBS, STOPPED))
CURRENT = TaskResult(TaskId("0-b"), UUID, NODE, Action.CURRENT,
                     TaskOutcome(OutcomeKind.SUCCESS, 0, "", state="running"), 1010.5)

ORDERS = [
    pytest.param(TASK, id="task"),
    pytest.param(SyncRequest(node=NODE, reason="daemon takeover"), id="sync_request"),
]
REPORTS = [
    pytest.param(
        TaskResult(
            task_id=TASK.task_id,
            uuid=UUID,
            node=NODE,
            action=Action.STOP,
            outcome=TaskOutcome(
                OutcomeKind.SUCCESS,
                0,
                "Successfully completed stop for VM w",
                state="stopped",
                change_time=1009.25,
                definition={"ram": 1024},
            ),
            time=1010.0,
        ),
        id="result",
    ),
    pytest.param(
        TaskResult(
            task_id=TASK.task_id,
            uuid=UUID,
            node=NODE,
            action=Action.CURRENT,
            outcome=TaskOutcome(OutcomeKind.NOT_FOUND, 1, "", state=None),
            time=1010.0,
        ),
        id="result-current-empty-message",
    ),
    pytest.param(CARRYING, id="result-carrying-its-observations"),
    pytest.param(ResultBatch(node=NODE, time=1011.0, results=(CARRYING, CURRENT)), id="results"),
    pytest.param(ObservationReport(node=NODE, time=1003.0, observations=(OBS, GONE)), id="obs"),
    pytest.param(Heartbeat(node=NODE, time=1004.0, interval=5.0, started=900.0), id="heartbeat"),
    pytest.param(FullSync(node=NODE, time=1005.0, vms=(OBS,), isos=("a.iso", "b.iso")), id="sync"),
    pytest.param(IsoList(node=NODE, time=1006.0, isos=()), id="isos"),
]


@pytest.mark.parametrize("order", ORDERS)
def test_order_round_trip(order: Any) -> None:
    assert order_from_json(decode_object(encode(to_json(order)))) == order


@pytest.mark.parametrize("report", REPORTS)
def test_report_round_trip(report: Any) -> None:
    assert report_from_json(decode_object(encode(to_json(report)))) == report


def test_a_result_without_observations_is_the_previous_versions_message() -> None:
    """A rolling upgrade: the daemon reads the older agent's `result` (no `observations`),
    and a result carrying none is sent exactly as that agent sent it (an older daemon reads
    it too)."""
    old = {"v": 1, "kind": "result", "task_id": "t", "uuid": UUID, "node": "node1",
           "action": "start", "time": 1.0,
           "outcome": {"kind": "success", "returncode": 0, "message": "", "state": None,
                       "change_time": None, "definition": None}}
    result = report_from_json(old)
    assert isinstance(result, TaskResult)
    assert result.observations == ()
    assert to_json(result) == old


def test_task_wire_shape() -> None:
    assert to_json(TASK) == {
        "v": 1,
        "kind": "task",
        "task_id": "0-a2327793-2600-423d-9f07",
        "uuid": UUID,
        "hostname": "web01.example.com",
        "node": "node1",
        "action": "stop",
        "params": {"force": False, "timeout": 180},
        "created": 1000.0,
        "deadline": 1330.0,
    }


@pytest.mark.parametrize(
    ("now", "ttl"),
    [
        pytest.param(1000.0, 330000, id="fresh"),
        pytest.param(1329.9995, 0, id="sub-millisecond"),
        pytest.param(2000.0, 0, id="past-deadline"),
    ],
)
def test_task_ttl(now: float, ttl: int) -> None:
    assert TASK.ttl_ms(now) == ttl


def _task(**changes: Any) -> dict[str, Any]:
    value = to_json(TASK)
    value.update(changes)
    return {k: v for k, v in value.items() if v is not ...}


@pytest.mark.parametrize(
    ("value", "error"),
    [
        pytest.param(_task(v=2), "unsupported version 2", id="version"),
        pytest.param(_task(kind=...), "without a 'kind'", id="no-kind"),
        pytest.param(_task(kind="launch"), "unknown order kind 'launch'", id="unknown-kind"),
        pytest.param(_task(action="destroy"), "'action' must be one of", id="bad-action"),
        pytest.param(_task(deadline="soon"), "'deadline' must be a number", id="deadline-str"),
        pytest.param(_task(deadline=True), "'deadline' must be a number", id="deadline-bool"),
        pytest.param(_task(uuid=""), "'uuid' must be a non-empty string", id="empty-uuid"),
        pytest.param(_task(params=[]), "'params' must be an object", id="params-list"),
    ],
)
def test_bad_orders(value: dict[str, Any], error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        order_from_json(value)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        pytest.param(
            {"v": 1, "kind": "heartbeat", "node": "n", "time": 1, "interval": 5},
            "'started' must be a number",
            id="heartbeat-started",
        ),
        pytest.param(
            {"v": 1, "kind": "isos", "node": "n", "time": 1, "isos": [1]},
            "list of strings",
            id="isos-not-strings",
        ),
        pytest.param(
            {
                "v": 1,
                "kind": "observations",
                "node": "n",
                "time": 1,
                "observations": [{"uuid": UUID, "state": 3, "change_time": 1}],
            },
            "'state' must be a string or null",
            id="obs-state",
        ),
        pytest.param(
            {
                "v": 1,
                "kind": "result",
                "task_id": "t",
                "uuid": UUID,
                "node": "n",
                "action": "start",
                "time": 1,
                "outcome": {"kind": "meh", "returncode": 0, "message": ""},
            },
            "'kind' must be one of",
            id="outcome-kind",
        ),
        pytest.param(
            {
                "v": 1,
                "kind": "result",
                "task_id": "t",
                "uuid": UUID,
                "node": "n",
                "action": "start",
                "time": 1,
                "outcome": {"kind": "success", "returncode": "0", "message": ""},
            },
            "'returncode' must be an integer",
            id="outcome-rc",
        ),
        pytest.param({"v": 1, "kind": "task"}, "unknown report kind 'task'", id="task-as-report"),
        pytest.param(
            to_json(CARRYING) | {"observations": [to_json(ObservationReport(
                NODE, 1, (GONE,)))["observations"][0]]},
            "'observations' must be of the result's VM",
            id="result-carrying-another-vm",
        ),
        pytest.param(
            to_json(CARRYING) | {"observations": {"uuid": UUID}},
            "'observations' must be a list",
            id="result-observations-not-a-list",
        ),
        pytest.param(
            {"v": 1, "kind": "results", "node": "n", "time": 1, "results": []},
            "'results' must be a non-empty list of objects",
            id="results-empty",
        ),
        pytest.param(
            to_json(ResultBatch(NODE, 1, (CARRYING,))) | {"results": [to_json(CURRENT) | {
                "time": "x"}]},
            "results results\\[\\] message: 'time' must be a number",
            id="results-item",
        ),
    ],
)
def test_bad_reports(value: dict[str, Any], error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        report_from_json(value)
