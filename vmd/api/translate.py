"""HTTP to protocol.md and back: pure functions, so every rule is table-tested without a server.

An HTTP request becomes one protocol request (protocol.md §2): its method; its path without
the configured prefix and without the trailing `/` Danube's clients always add; and `data`
taken, as upstream does (api/decorators.py), from the query string for GET and from the JSON
body for every other method. A reply becomes the HTTP response: status = the reply's `code`,
body = the reply without `code`, and header `es_task_id` on task-style bodies (upstream's
TaskResponse, api/task/response.py), which is what `es` and the GUI read.

Errors the gateway answers itself use the daemon's wording (protocol.md §3), so a client
cannot tell who answered: `Not found`, `Malformed request: <reason>`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from vmd.bus import MAX_BODY, BodyError, decode_object, encode
from vmd.fsm.replies import NOT_FOUND, error
from vmd.fsm.routing import Kind, Route
from vmd.model import JsonObject, Reply
from vmd.obs.metrics import OTHER, REQUEST_KINDS

CONTENT_TYPE: Final = "application/json"
TASK_ID_HEADER: Final = "es_task_id"
STREAM_HEADER: Final = "es_stream"
# The request header that asks for a stream, and the value of Danube's own `es` tool, the
# only client that gets the final status code on a line of its own (api/middleware.py).
STREAM_REQUEST_HEADER: Final = "ES-STREAM"
ES_CLIENT: Final = "es"

NOT_FOUND_REPLY: Final = error(404, NOT_FOUND)
# DRF's JSONRenderer caps `Accept: application/json; indent=N` at 8.
MAX_INDENT: Final = 8


# `%2F` (any case) in a raw path: a "/" inside one segment.
_ENCODED_SLASH = re.compile("%2f", re.IGNORECASE)


def encoded_slash(raw_path: str) -> bool:
    """Whether a raw (still percent-encoded) request path holds an encoded `/` (`%2F`).

    Routing splits the path into segments; the decoded path would split `x%2Fstatus` into
    two, so `/api/vm/x%2Fstatus%2Fcurrent` reached the status/current route of VM `x`.
    Such a path is refused (404, docs/api.md): no VM name, task id or route segment holds a
    `/`. Without a `%2F`, the decoded path has exactly the raw path's segments.
    """
    return _ENCODED_SLASH.search(raw_path) is not None


def strip_prefix(path: str, prefix: str) -> str | None:
    """The protocol path of an HTTP path under `prefix` ("" = none), or None when outside it.

    One trailing "/" is dropped: protocol.md accepts both and the daemon then sees one
    spelling per resource (in its logs, in idempotency records).
    """
    if prefix:
        if not path.startswith(prefix + "/"):
            return None
        path = path[len(prefix):]
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


def query_data(query: Iterable[tuple[str, str]]) -> JsonObject:
    """`data` of a GET: the query string's parameters, strings as sent; the last one of a
    repeated name wins (Django's `QueryDict.get`)."""
    return dict(query)


def body_data(body: bytes) -> JsonObject | Reply:
    """`data` of a PUT (or any non-GET): the JSON object of the body; an empty body is `{}`.
    Anything else is the daemon's own 400 (protocol.md §3)."""
    if not body.strip():
        return {}
    try:
        return decode_object(body, limit=None)
    except BodyError as exc:
        return malformed(exc.reason)


def malformed(reason: str) -> Reply:
    return error(400, f"Malformed request: {reason}")


def too_large(size: int | None = None) -> Reply:
    got = f" ({size} bytes)" if size is not None else ""
    return error(413, f"Request body too large{got}: the limit is {MAX_BODY} bytes")


def request_body(method: str, path: str, data: JsonObject) -> bytes:
    """The protocol request as sent on the bus (the caller checks it against MAX_BODY)."""
    return encode({"method": method, "path": path, "data": data})


def task_id_of(body: JsonObject) -> str | None:
    """The task id of a task-style body (`{"status", "result", "task_id"}`), else None."""
    task_id = body.get("task_id")
    if isinstance(task_id, str) and task_id and "status" in body:
        return task_id
    return None


def reply_headers(reply: Reply) -> dict[str, str]:
    headers = {"Content-Type": CONTENT_TYPE}
    task_id = task_id_of(reply.body)
    if task_id is not None:
        headers[TASK_ID_HEADER] = task_id
    return headers


def accept_indent(accept: str) -> int | None:
    """The `indent=N` parameter of an `Accept: application/json; indent=N` header (`es`
    sends `indent=4`), as DRF honours it: 1..8, or None for compact output."""
    for media in accept.split(","):
        for param in media.split(";")[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "indent":
                try:
                    indent = int(value.strip())
                except ValueError:
                    return None
                return min(indent, MAX_INDENT) if indent > 0 else None
    return None


def render(body: Any, indent: int | None = None) -> bytes:
    """A JSON response body (UTF-8, like the bus: no ASCII escaping)."""
    if indent is None:
        return encode(body)
    return json.dumps(body, indent=indent, ensure_ascii=False).encode()


_KINDS: Final[Mapping[Kind, str]] = {
    Kind.LIST: "list",
    Kind.STATUS: "get",
    Kind.CURRENT_GET: "current",
    Kind.CURRENT_PUT: "current",
    Kind.DEFINE: "define",
    Kind.TASK: "task",
    Kind.HISTORY: "history",
}


def request_kind(route: Route | None) -> str:
    """The metrics label of a request (`vmd.obs.metrics.REQUEST_KINDS`)."""
    if route is None:
        return OTHER
    if route.kind is Kind.ACTION:
        return route.action if route.action in REQUEST_KINDS else OTHER
    return _KINDS.get(route.kind, OTHER)


def keepalive_offsets() -> Iterator[float]:
    """Seconds after a stream's start at which it checks the task and, while it still runs,
    sends one space: Danube's schedule (api/middleware.py), every 1 s for the first 5 s,
    then 3 s up to 30 s, 6 s up to 60 s, 12 s up to 1200 s and 30 s after that."""
    elapsed = 0
    while True:
        if elapsed > 1200:
            nap = 30
        elif elapsed > 60:
            nap = 12
        elif elapsed > 30:
            nap = 6
        elif elapsed > 5:
            nap = 3
        else:
            nap = 1
        elapsed += nap
        yield float(elapsed)
