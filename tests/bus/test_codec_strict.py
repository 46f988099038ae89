"""Strict decoding (issue 12, finding 1): JSON text that spells a lone UTF-16 surrogate or a
number that is not finite is a `BodyError`, not a value no answer could echo. An answer
holding `"\\ud800"` cannot be encoded as UTF-8 and a `1e400` decodes to `inf`: both stopped
the daemon when it tried to send or store the answer."""

from __future__ import annotations

import pytest

from vmd.bus import BodyError, decode, decode_object, encode

SURROGATE = "a lone surrogate"
OUT_OF_RANGE = "body is not JSON (a number is out of range)"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(rb'"\ud800"', SURROGATE + r" \ud800", id="high-alone"),
        pytest.param(rb'"\udfff"', SURROGATE + r" \udfff", id="low-alone"),
        pytest.param(rb'"\uDBFF"', SURROGATE + r" \udbff", id="upper-case-escape"),
        pytest.param(rb'"x\ude00\ud83d"', SURROGATE, id="pair-in-the-wrong-order"),
        pytest.param(rb'{"method": "\ud800", "path": "/vm/status"}', SURROGATE, id="value"),
        pytest.param(rb'{"\udfff": 1}', SURROGATE, id="key"),
        pytest.param(rb'{"data": {"a": [1, {"b": ["ok", "\ud800"]}]}}', SURROGATE, id="deep"),
        pytest.param(rb'[' * 500 + rb'"\ud800"' + rb']' * 500, SURROGATE, id="very-deep"),
        pytest.param(b"1e400", OUT_OF_RANGE, id="huge-exponent"),
        pytest.param(b'{"data": {"timeout": -1e400}}', OUT_OF_RANGE, id="negative-huge"),
        pytest.param(b"[" + b"9" * 400 + b".0]", OUT_OF_RANGE, id="many-digits"),
        pytest.param(b'{"t": NaN}', "NaN is not a JSON value", id="nan"),
        pytest.param(b"[Infinity]", "Infinity is not a JSON value", id="infinity"),
        pytest.param(b"[-Infinity]", "-Infinity is not a JSON value", id="minus-infinity"),
    ],
)
def test_refused(body: bytes, reason: str) -> None:
    with pytest.raises(BodyError) as caught:
        decode(body)
    assert reason in caught.value.reason
    assert caught.value.reason.startswith("body is not JSON (")
    assert "\n" not in caught.value.reason


@pytest.mark.parametrize(
    ("body", "value"),
    [
        pytest.param(rb'"\ud83d\ude00"', "\U0001f600", id="a-pair-is-one-code-point"),
        pytest.param(rb'"\uD83D\uDE00"', "\U0001f600", id="a-pair-upper-case"),
        pytest.param(rb'"\\ud800"', "\\ud800", id="an-escaped-backslash-is-no-escape"),
        pytest.param("\"\U0001f600 \u00e9\"".encode(), "\U0001f600 \u00e9", id="utf8-text"),
        pytest.param(b"[1e308, -1e308, 5e-324, 1e-400]", [1e308, -1e308, 5e-324, 0.0],
                     id="finite-extremes"),
        pytest.param(b"[1.5, 2E3, -0.0]", [1.5, 2000.0, -0.0], id="floats"),
    ],
)
def test_accepted(body: bytes, value: object) -> None:
    assert decode(body) == value


def test_what_decodes_can_be_encoded_again() -> None:
    body = rb'{"s": "\ud83d\ude00 \u2028", "f": 1.5e300, "n": 12345678901234567890123}'
    assert decode_object(encode(decode_object(body))) == decode_object(body)
