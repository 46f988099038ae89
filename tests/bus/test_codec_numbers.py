"""A valid JSON body with an integer literal over Python's 4300-digit conversion limit is a
`BodyError` (400 Malformed request), not a bare ValueError: that one crashed the daemon.
Found by the fault suite's fuzzer (tests/reliability, docs/reliability.md)."""

from __future__ import annotations

import pytest

from vmd.bus import BodyError, decode_object


@pytest.mark.parametrize(
    "digits",
    [pytest.param(4301, id="just-over"), pytest.param(60_000, id="huge")],
)
def test_a_too_long_integer_is_a_body_error(digits: int) -> None:
    body = b'{"method": "PUT", "path": "/vm/x/status/stop", "data": {"timeout": ' + \
        b"9" * digits + b"}}"
    with pytest.raises(BodyError) as caught:
        decode_object(body)
    assert caught.value.reason == "body is not JSON (a number is too long)"


def test_a_long_integer_within_the_limit_is_parsed() -> None:
    assert decode_object(b'{"n": ' + b"1" * 4300 + b"}")["n"] == int("1" * 4300)
