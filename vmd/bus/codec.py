"""One place that turns message bodies into JSON values and back.

The protocol (protocol.md §2) fixes UTF-8 JSON with a 64 KiB limit on requests; the agent
protocol uses the same encoding. Keeping encode/decode here means every publisher and every
consumer agree on the details: compact separators, no NaN/Infinity (not JSON, and other
clients' parsers reject them), UTF-8 without ASCII escaping, and a size check *before* parsing
so a huge body costs nothing. stdlib `json` is used: orjson is not a declared dependency and
bodies are small (a few hundred bytes), so it would not change the measured throughput much.

`BodyError.reason` is a short phrase; the daemon wraps it into its 400 text
(`Malformed request: <reason>`), so the wording of the answer stays the daemon's decision.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from vmd.model import JsonObject

CONTENT_TYPE = "application/json"

# protocol.md §2: a request body is at most 64 KiB.
MAX_BODY = 64 * 1024


class BodyError(ValueError):
    """A body that is not acceptable JSON; `reason` is a short phrase for a 400 detail."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _reject_constant(name: str) -> NoReturn:
    raise BodyError(f"body is not JSON ({name} is not a JSON value)")


# One encoder for every message: json.dumps with arguments builds a new JSONEncoder per call.
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def encode(value: Any) -> bytes:
    """JSON-encode a value; a value that JSON cannot hold is a bug in the caller (raises)."""
    return _ENCODE(value).encode()


def decode(body: bytes, *, limit: int | None = MAX_BODY) -> Any:
    """Parse a body, checking its size first. Raises `BodyError`."""
    if limit is not None and len(body) > limit:
        raise BodyError(f"body is {len(body)} bytes, over the {limit}-byte limit")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("body is not UTF-8") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BodyError(f"body is not JSON ({exc.msg} at position {exc.pos})") from None
    except BodyError:
        raise  # NaN/Infinity (`_reject_constant`)
    except ValueError:
        # Valid JSON, but an integer literal over Python's 4300-digit conversion limit: the
        # bare ValueError crashed the daemon (found by the fault suite's fuzzer).
        raise BodyError("body is not JSON (a number is too long)") from None
    except RecursionError:
        raise BodyError("body is not JSON (nested too deeply)") from None


def decode_object(body: bytes, *, limit: int | None = MAX_BODY) -> JsonObject:
    """Parse a body that must be a JSON object. Raises `BodyError`."""
    value = decode(body, limit=limit)
    if not isinstance(value, dict):
        raise BodyError("body is not a JSON object")
    return value
