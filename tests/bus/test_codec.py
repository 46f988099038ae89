"""The JSON codec: size limit first, strict JSON, one-line reasons for the daemon's 400s."""

from __future__ import annotations

import datetime
import json

import pytest

from vmd.bus import MAX_BODY, BodyError, decode, decode_object, encode
from vmd.bus.codec import EncodeError


def test_limit_is_64_kib() -> None:
    assert MAX_BODY == 65536


def test_encode_is_compact_utf8() -> None:
    assert encode({"a": [1, "ž"]}) == '{"a":[1,"ž"]}'.encode()


def test_encode_refuses_nan() -> None:
    with pytest.raises(ValueError):
        encode({"x": float("nan")})


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"code": 201, "status": "PENDING", "result": None, "task_id": "0-a"},
                     id="reply"),
        pytest.param({"s": "é ü \u2028 \x1f \"q\" \\", "t": 1764222062.3, "b": [True, False]},
                     id="escapes-and-floats"),
        pytest.param({1: "int key", "big": 2**70}, id="what-only-json-handles"),
        pytest.param([{"hostname": "a", "tasks": {}, "status_change": None}] * 3, id="list"),
    ],
)
def test_encode_writes_what_the_strict_json_encoder_writes(value: object) -> None:
    strict = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert encode(value) == strict.encode()


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"x": None, "y": [1, {"z": float("inf")}]}, id="inf-next-to-null"),
        pytest.param([None, float("nan")], id="nan-in-list"),
        pytest.param((float("-inf"),), id="tuple"),
    ],
)
def test_encode_refuses_non_finite_floats_anywhere(value: object) -> None:
    with pytest.raises(ValueError):
        encode(value)


def test_encode_refuses_what_json_refuses() -> None:
    with pytest.raises(EncodeError):
        encode({"when": datetime.datetime(2026, 1, 1)})


def test_round_trip() -> None:
    value = {"method": "PUT", "path": "/vm/a/status/stop", "data": {"force": True, "t": 1.5}}
    assert decode_object(encode(value)) == value


def test_body_at_the_limit_is_accepted() -> None:
    body = b'{"p":"' + b"x" * (MAX_BODY - 8) + b'"}'
    assert len(body) == MAX_BODY
    assert decode_object(body)["p"].startswith("x")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"{" + b" " * MAX_BODY + b"}", "over the 65536-byte limit", id="too-big"),
        pytest.param(b"\xff\xfe", "not UTF-8", id="not-utf8"),
        pytest.param(b"{", "not JSON", id="truncated"),
        pytest.param(b"", "not JSON", id="empty"),
        pytest.param(b'{"a": NaN}', "NaN is not a JSON value", id="nan"),
        pytest.param(b"[1, 2]", "not a JSON object", id="array"),
        pytest.param(b'"text"', "not a JSON object", id="string"),
        pytest.param(b"[" * 100000 + b"]" * 100000, "not JSON", id="too-deep"),
    ],
)
def test_malformed_bodies(body: bytes, reason: str) -> None:
    with pytest.raises(BodyError) as info:
        decode_object(body, limit=None if len(body) > MAX_BODY and b"[" in body else MAX_BODY)
    assert reason in info.value.reason
    assert "\n" not in info.value.reason


def test_limit_can_be_lifted_for_internal_messages() -> None:
    big = encode({"vms": ["x" * 100] * 1000})
    assert len(big) > MAX_BODY
    assert decode(big, limit=None)["vms"][0] == "x" * 100
