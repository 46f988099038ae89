"""A `timeout` of digits beyond Python's 4300-digit limit for int(str) is a field error, not a
ValueError: that one crashed the daemon (found by the fault suite's fuzzer,
tests/reliability, docs/reliability.md)."""

from __future__ import annotations

import pytest

from vmd.fsm import replies
from vmd.fsm.params import parse_timeout

from .helpers import ALICE, put, world_in


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        pytest.param("0" * 60_000, None, id="60000-zeros"),
        pytest.param("9" * 4301, None, id="just-over-the-limit"),
        pytest.param("0" * 4299 + "7", 7, id="at-the-limit"),
        pytest.param("0060", 60, id="leading-zeros"),
    ],
)
def test_parse_timeout_of_long_digit_strings(value: str, parsed: int | None) -> None:
    assert parse_timeout(value) == parsed


def test_a_huge_digit_string_timeout_is_a_field_error() -> None:
    world, _, _ = world_in("running", brand="kvm")
    d = put(world, ALICE, "stop", {"timeout": "0" * 60_000})
    assert d.reply is not None and d.reply.code == 400
    assert d.reply.body["result"] == {"timeout": [replies.INVALID_INTEGER]}
