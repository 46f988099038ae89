"""A request as it arrives on `vmd.commands`, before anything is decided (protocol.md §2-3):
where it may be answered, what its body says, whether it asks for stream mode, and the
`kind` label its metrics carry.

Pure functions of the message, apart from the intake's state (vmd.daemon.intake), so that
each rule is read and tested in one place: a `reply_to` vmd may answer to, the 400 reasons
of a malformed body, the `stream` header's true values.
"""

from __future__ import annotations

from typing import Any

from vmd.bus import DIRECT_REPLY_TO, BodyError, decode_object
from vmd.fsm import Kind, Route
from vmd.model import Reply, Request

MALFORMED = "Malformed request: "
# The longest `message_id` kept as an idempotency key (protocol.md §5).
MAX_MESSAGE_ID = 128
MESSAGE_ID_TOO_LONG = f"'message_id' is longer than {MAX_MESSAGE_ID} characters"
REPLY_TO_NOT_ALLOWED = "reply_to not allowed"

_KINDS = {
    Kind.LIST: "list", Kind.STATUS: "get", Kind.CURRENT_GET: "current",
    Kind.CURRENT_PUT: "current", Kind.DEFINE: "define", Kind.TASK: "task",
    Kind.HISTORY: "history",
}
_ACTIONS = frozenset({"start", "stop", "reboot"})
_DIRECT_FORMS = DIRECT_REPLY_TO + "."
_SERVER_NAMED = "amq.gen-"
_VMD_QUEUES = "vmd."


def reply_to_allowed(reply_to: str, user: str | None) -> bool:
    """Whether vmd may answer to `reply_to` (protocol.md §2): Direct Reply-to (as sent, or
    as the broker rewrites it: `amq.rabbitmq.reply-to.<...>`), a server-named queue, or a
    queue named `<user_id>.<...>`, never one of vmd's own `vmd.*` queues."""
    if reply_to == DIRECT_REPLY_TO or reply_to.startswith((_DIRECT_FORMS, _SERVER_NAMED)):
        return True
    return bool(user) and reply_to.startswith(f"{user}.") and not reply_to.startswith(
        _VMD_QUEUES)


def parse_request(body: bytes) -> Request | str:
    """The request in a body, or the reason it is malformed (for the 400 detail)."""
    try:
        value = decode_object(body)
    except BodyError as exc:
        return exc.reason
    method, path, data = value.get("method"), value.get("path"), value.get("data")
    if method is None:
        return "missing 'method'"
    if not isinstance(method, str) or not method:
        return "'method' must be a non-empty string"
    if path is None:
        return "missing 'path'"
    if not isinstance(path, str) or not path:
        return "'path' must be a non-empty string"
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        return "'data' must be an object"
    return Request(method, path, data)


def request_kind(routed: Route | Reply) -> str:
    """The metrics' `kind` label of a routed request (docs/operations.md)."""
    if type(routed) is not Route:
        return "other"
    if routed.kind is Kind.ACTION:
        return routed.action if routed.action in _ACTIONS else "other"
    return _KINDS[routed.kind]


def wants_stream(value: Any) -> bool:
    """Header `stream`: JSON/AMQP true, or "true"/"1" in any case."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return value is True or (type(value) is int and value == 1)
