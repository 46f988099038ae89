"""The agent-report decoder refuses what the daemon could not store (docs/bus.md §3 "Field
limits"): an item (an observation, a VM of a full sync, a result of a batch) holding such a
value is left out (`LeftOut`) and the others kept; such a value in the message's own fields
is `RefusedValue`, a `ProtocolError` the daemon refuses (`bad_value`) instead of
dead-lettering. Each row is a genuine report with one value made hostile; the last rows show
what is still accepted (the limits are not tighter than the store needs)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from vmd.bus import (
    FullSync,
    IsoList,
    ObservationReport,
    ProtocolError,
    RefusedValue,
    ResultBatch,
    TaskResult,
    to_json,
)
from vmd.bus.agent_fields import MAX_NAME, MAX_OWNER
from vmd.bus.agent_messages import report_from_json
from vmd.model import Action, NodeName, Observation, OutcomeKind, TaskId, TaskOutcome, VmUuid
from vmd.store.rows import MAX_KEY_BYTES

NODE = NodeName("node1")
UUID = VmUuid("8a1a4e6c-0000-4000-8000-00000000aaaa")
VM = {"uuid": UUID, "hostname": "web01.example.com", "alias": "web01", "brand": "kvm",
      "owner_uuid": "8a1a4e6c-0000-4000-8000-000000000001",
      "internal_metadata": {"ostype": "linux"}}


def _obs(uuid: str = UUID, **vm: Any) -> Observation:
    return Observation(VmUuid(uuid), NODE, "running", 1.0, VM | vm)


def _observations(*obs: Observation) -> dict[str, Any]:
    return to_json(ObservationReport(NODE, 1.0, obs))


def _sync(*obs: Observation, isos: tuple[str, ...] = ()) -> dict[str, Any]:
    return to_json(FullSync(NODE, 1.0, obs, isos))


def _result(uuid: str = UUID, task_id: str = "0-t", **definition: Any) -> dict[str, Any]:
    outcome = TaskOutcome(OutcomeKind.SUCCESS, 0, "ok", "running", 1.0,
                          VM | definition if definition else None)
    return to_json(TaskResult(TaskId(task_id), VmUuid(uuid), NODE, Action.START, outcome, 1.0))


OTHER = VmUuid("8a1a4e6c-0000-4000-8000-00000000bbbb")
GOOD = Observation(OTHER, NODE, "stopped", 1.0, VM | {"uuid": OTHER})


@pytest.mark.parametrize(
    ("hostile", "error", "kept"),
    [
        pytest.param(_obs(hostname="a\x00b"), "'hostname' holds a NUL", UUID,
                     id="nul-hostname"),
        pytest.param(_obs(alias="a\x00"), "'alias' holds a NUL", UUID, id="nul-alias"),
        pytest.param(_obs(owner_uuid="\x00"), "'owner_uuid' holds a NUL", UUID, id="nul-owner"),
        pytest.param(_obs(brand="kvm\x00"), "'brand' holds a NUL", UUID, id="nul-brand"),
        pytest.param(_obs(tags={"ostype": "\x00"}), "'tags.ostype' holds a NUL", UUID,
                     id="nul-ostype-tag"),
        pytest.param(_obs(hostname="é" * 128), f"'hostname' is over {MAX_NAME} bytes", UUID,
                     id="hostname-256-utf8-bytes"),
        pytest.param(_obs(owner_uuid="o" * (MAX_OWNER + 1)),
                     f"'owner_uuid' is over {MAX_OWNER} bytes", UUID, id="owner-too-long"),
        pytest.param(Observation(UUID, NODE, "run\x00ning", 1.0, None), "'state' holds a NUL",
                     UUID, id="state-nul"),
        pytest.param(_obs("u" * (MAX_KEY_BYTES + 1)), f"'uuid' is over {MAX_NAME} bytes", None,
                     id="uuid-over-key-bytes"),
        pytest.param(_obs(UUID.upper() + "0"), "'uuid' is not a uuid", None, id="uuid-37"),
        pytest.param(_obs(UUID.replace("-", "", 1)), "'uuid' is not a uuid", None,
                     id="uuid-without-a-dash"),
        pytest.param(_obs("8a1a4e6c-0000-4000-8000-000000000-01"), "'uuid' is not a uuid", None,
                     id="uuid-dash-out-of-place"),
        pytest.param(_obs(UUID[:-1] + "\x00"), "'uuid' holds a NUL", None, id="uuid-nul"),
    ],
)
@pytest.mark.parametrize("kind", ["observations", "sync", "result"])
def test_an_item_is_left_out(hostile: Observation, error: str, kept: VmUuid | None,
                             kind: str) -> None:
    """The bad item is left out (`LeftOut`: its uuid when valid, the reason), the good one
    beside it decoded; a full sync's `kept` names the left-out VMs whose uuid is valid. A
    result's carried observation with a bad uuid is left out too (it cannot be of another
    VM than the result's: only a valid uuid can be)."""
    if kind == "result":
        good = replace(GOOD, uuid=UUID)
        sent = TaskResult(TaskId("0-t"), UUID, NODE, Action.START, TaskOutcome(
            OutcomeKind.SUCCESS, 0, "ok"), 1.0, (hostile, good))
        result = report_from_json(to_json(sent))
        assert isinstance(result, TaskResult) and result.observations == (good,)
        left = result.left_out
        assert result == replace(sent, observations=(good,), left_out=left)
    elif kind == "observations":
        report = report_from_json(_observations(hostile, GOOD))
        assert isinstance(report, ObservationReport) and report.observations == (GOOD,)
        left = report.left_out
    else:
        sync = report_from_json(_sync(GOOD, hostile))
        assert isinstance(sync, FullSync) and sync.vms == (GOOD,)
        left = sync.left_out
        assert sync.kept == (frozenset() if kept is None else {kept})
    assert [x.uuid for x in left] == [kept]
    assert re.search(error, left[0].reason)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        pytest.param(_sync(_obs(), isos=("a\x00.iso",)), r"'isos\[\]' holds a NUL",
                     id="sync-nul-iso"),
        pytest.param(to_json(IsoList(NODE, 1.0, ("i" * (MAX_NAME + 1),))),
                     r"'isos\[\]' is over", id="iso-name-too-long"),
        pytest.param(_result("web01"), "'uuid' is not a uuid", id="result-uuid"),
        pytest.param(_result(task_id="t" * (MAX_NAME + 1)), "'task_id' is over",
                     id="result-task-id-too-long"),
        pytest.param(_result(hostname="x\x00"), "'definition'.*'hostname' holds a NUL",
                     id="result-definition-nul-hostname"),
        pytest.param(_observations(_obs()) | {"node": "node1\x00"}, "'node' holds a NUL",
                     id="node-nul"),
    ],
)
def test_refused_whole(value: dict[str, Any], error: str) -> None:
    """A bad value in the message's own fields (not in one of its items) refuses it."""
    with pytest.raises(RefusedValue, match=error):
        report_from_json(value)


def test_a_result_with_a_bad_value_is_left_out_of_its_batch() -> None:
    """Results of other tasks are independent: one with a bad value of its own is left out
    of a batch (a lone one is refused whole, above)."""
    good = report_from_json(_result(task_id="0-good"))
    assert isinstance(good, TaskResult)
    value = to_json(ResultBatch(NODE, 1.0, (good, good)))
    value["results"][0]["task_id"] = "t" * (MAX_NAME + 1)
    batch = report_from_json(value)
    assert isinstance(batch, ResultBatch) and batch.results == (good,)
    assert [x.uuid for x in batch.left_out] == [UUID]
    assert "'task_id' is over" in batch.left_out[0].reason


def test_refused_value_is_a_protocol_error() -> None:
    """A receiver that only knows `ProtocolError` (an agent decoding an order) still
    rejects it: the subclass only lets the daemon count it as a refusal."""
    assert issubclass(RefusedValue, ProtocolError)


def test_a_type_error_is_still_a_protocol_error_not_a_refusal() -> None:
    """A malformed report stays a bug to dead-letter, whatever else it holds."""
    with pytest.raises(ProtocolError) as caught:
        report_from_json(_observations(_obs()) | {"time": "soon"})
    assert not isinstance(caught.value, RefusedValue)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(_sync(_obs(hostname="h" * MAX_NAME, owner_uuid="o" * MAX_OWNER)),
                     id="at-the-bounds"),
        pytest.param(_sync(_obs(UUID.upper())), id="uppercase-uuid"),
        # vmadm (and the simulator's `create --uuid`) checks only length and dashes.
        pytest.param(_sync(_obs("vm000001-test-4000-8000-00000000aaaz")), id="vmadm-shaped-uuid"),
        pytest.param(_sync(_obs(customer_metadata={"k": "a\x00b"}, hostname=7)),
                     id="nul-outside-kept-fields-and-non-string-hostname"),
        pytest.param(to_json(TaskResult(TaskId("0-t"), UUID, NODE, Action.START, TaskOutcome(
            OutcomeKind.FAILURE, 1, "vmadm said\x00 " + "x" * 10_000), 1.0)),
            id="free-text-message"),
    ],
)
def test_accepted(value: dict[str, Any]) -> None:
    report_from_json(value)


def test_every_bounded_key_fits_the_store() -> None:
    """A uuid or a task id within its bound is a key the store holds on both backends, so
    nothing the decoder accepts can be the RowError this guards against."""
    assert len(UUID) <= MAX_NAME < MAX_KEY_BYTES
