"""One place that turns message bodies into JSON values and back.

The protocol (protocol.md §2) fixes UTF-8 JSON with a 64 KiB limit on requests; the agent
protocol uses the same encoding. Keeping encode/decode here means every publisher and every
consumer agree on the details: compact separators, no NaN/Infinity (not JSON, and other
clients' parsers reject them), UTF-8 without ASCII escaping, and a size check *before* parsing
so a huge body costs nothing.

Encoding uses orjson (a declared dependency): for the values vmd sends it writes the same
bytes as the strict `json` encoder (floats aside, which may be spelled differently, e.g.
`1e-7` for `1e-07`: the same number), about ten times faster, which matters for the largest
message vmd sends: `GET /vm/status` of 100,000 VMs is ~20 MB (0.28-0.46 s with json,
0.02-0.07 s with orjson, docs/performance.md). orjson writes NaN/Infinity as `null` instead of
refusing them, so a body whose output holds a `null` is checked for them (and refused
through `json`, as before); whatever orjson refuses goes to `json` too. Decoding stays with
`json`: orjson reads an integer beyond 64 bits as a float, which would change what a
request's parameters mean, and request bodies are small.

Decoding is strict about what JSON text may spell but no receiver can hold (issue 12): a
lone UTF-16 surrogate (`"\\ud800"`: a `str` that cannot be encoded as UTF-8 again, so an
answer echoing it could not be sent) and a number that is not finite (`1e400` reads as
`inf`; `NaN`/`Infinity` are not JSON) are a `BodyError`, like any other malformed body. Both
checks cost nothing on the usual body: a float literal goes through `_finite_float` (ints
and bodies without floats do not), and the walk that looks for surrogates runs only when
the text holds a `\\uD...` escape, the only way to spell one in valid UTF-8.

`BodyError.reason` is a short phrase; the daemon wraps it into its 400 text
(`Malformed request: <reason>`), so the wording of the answer stays the daemon's decision.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

import orjson

from vmd.model import JsonObject

CONTENT_TYPE = "application/json"

# protocol.md §2: a request body is at most 64 KiB.
MAX_BODY = 64 * 1024


class BodyError(ValueError):
    """A body that is not acceptable JSON; `reason` is a short phrase for a 400 detail."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EncodeError(ValueError):
    """A value JSON cannot carry (a lone surrogate, NaN, a type JSON lacks, nesting too deep).

    A bug where the value was made, but never the process's end: the daemon records each
    answer, event and order encoded, so the one that raises this fails its own request
    (500 `Internal error`, dead-lettered), not the turn (docs/reliability.md).
    """


def _reject_constant(name: str) -> NoReturn:
    raise BodyError(f"body is not JSON ({name} is not a JSON value)")


# The strict reference encoder (one for every call: json.dumps with arguments builds a new
# JSONEncoder per call). It raises for NaN/Infinity and for what is not JSON.
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
# Values orjson would serialize although `json` refuses them: handed to `json`, which raises.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
_isfinite = math.isfinite
_SCALARS = (str, int, bool, type(None))


def encode(value: Any) -> bytes:
    """JSON-encode a value. Raises `EncodeError` for a value JSON cannot hold (a bug in the
    caller)."""
    try:
        out = orjson.dumps(value, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        return _strict(value)  # raises as before, or handles what orjson does not
    # orjson writes NaN/Infinity as null: only a body with a null can hide one.
    try:
        finite = b"null" not in out or _finite(value)
    except RecursionError:
        finite = False
    return out if finite else _strict(value)


def fragment(encoded: bytes) -> Any:
    """JSON text already made by `encode`, to embed as is in a value given to `encode`: the
    daemon encodes a big list in slices (vmd.daemon.listing) and not again in its reply.
    (`_finite` does not look into it: it was checked when it was encoded.)"""
    return orjson.Fragment(encoded)


def _strict(value: Any) -> bytes:
    try:
        return _ENCODE(value).encode()
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # UnicodeEncodeError (a lone surrogate) is a ValueError.
        raise EncodeError(f"not JSON-encodable ({type(exc).__name__}: {exc})"[:200]) from None


def _finite(value: Any) -> bool:
    """No NaN/Infinity anywhere in a JSON-like value."""
    if isinstance(value, float):
        return _isfinite(value)
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, list | tuple):
        items = value
    else:
        return True
    for item in items:
        if type(item) in _SCALARS:
            continue
        if not _finite(item):
            return False
    return True


def _finite_float(text: str) -> float:
    value = float(text)
    if not _isfinite(value):
        raise BodyError("body is not JSON (a number is out of range)")
    return value


# One decoder for every call (json.loads with arguments builds a new one per call).
_DECODE = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float).decode
_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate_in(value: Any) -> str | None:
    """The first lone surrogate in a decoded value's strings (keys too), as `\\uXXXX`.
    Iterative: the value may be nested as deep as the parser allowed."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found = _SURROGATE.search(item)
            if found is not None:
                return f"\\u{ord(found.group()):04x}"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def decode(body: bytes, *, limit: int | None = MAX_BODY) -> Any:
    """Parse a body, checking its size first. Raises `BodyError`."""
    if limit is not None and len(body) > limit:
        raise BodyError(f"body is {len(body)} bytes, over the {limit}-byte limit")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("body is not UTF-8") from None
    try:
        value = _DECODE(text)
    except json.JSONDecodeError as exc:
        raise BodyError(f"body is not JSON ({exc.msg} at position {exc.pos})") from None
    except BodyError:
        raise  # NaN/Infinity (`_reject_constant`), 1e400 (`_finite_float`)
    except ValueError:
        # Valid JSON, but an integer literal over Python's 4300-digit conversion limit: the
        # bare ValueError crashed the daemon (found by the fault suite's fuzzer).
        raise BodyError("body is not JSON (a number is too long)") from None
    except RecursionError:
        raise BodyError("body is not JSON (nested too deeply)") from None
    # UTF-8 cannot hold a surrogate (the decode above refuses one): only an escape can.
    if "\\ud" in text or "\\uD" in text:
        surrogate = _surrogate_in(value)
        if surrogate is not None:
            raise BodyError(f"body is not JSON (a lone surrogate {surrogate} in a string)")
    return value


def decode_object(body: bytes, *, limit: int | None = MAX_BODY) -> JsonObject:
    """Parse a body that must be a JSON object. Raises `BodyError`."""
    value = decode(body, limit=limit)
    if not isinstance(value, dict):
        raise BodyError("body is not a JSON object")
    return value
