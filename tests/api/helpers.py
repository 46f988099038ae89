"""Constants and small helpers shared by the gateway tests."""

from __future__ import annotations

import json
from typing import Any

ADMIN_KEY = "admin-key-0123456789abcdef"
ALICE_KEY = "alice-key-0123456789abcdef"
# Stream keep-alives at 1/20 of upstream's schedule: 50 ms, 100 ms, ...
TIME_SCALE = 0.05


def admin(**headers: str) -> dict[str, str]:
    return {"ES-API-KEY": ADMIN_KEY, **headers}


def alice(**headers: str) -> dict[str, str]:
    return {"ES-API-KEY": ALICE_KEY, **headers}


def split_stream(body: bytes, *, es: bool) -> tuple[int, int | None, Any]:
    """A stream body -> (keep-alive spaces, the code line or None, the final JSON)."""
    rest = body.lstrip(b" ")
    spaces = len(body) - len(rest)
    code = None
    if es:
        line, _, rest = rest.partition(b"\n")
        code = int(line)
    return spaces, code, json.loads(rest)


async def fetch(session: Any, method: str, url: str, **kwargs: Any) -> tuple[int, Any, bytes]:
    """One HTTP request: (status, headers, whole body)."""
    async with session.request(method, url, **kwargs) as response:
        return response.status, response.headers, await response.read()
