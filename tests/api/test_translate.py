"""The pure parts of the gateway, table by table: prefix, data, headers, indent, the
keep-alive schedule, metric kinds, and API keys."""

from __future__ import annotations

import itertools

import pytest
from multidict import CIMultiDict

from vmd.api.auth import KeyRing
from vmd.api.translate import (
    accept_indent,
    body_data,
    keepalive_offsets,
    query_data,
    render,
    reply_headers,
    request_kind,
    strip_prefix,
    task_id_of,
)
from vmd.fsm.routing import Kind, Route
from vmd.model import Reply


@pytest.mark.parametrize(
    ("path", "prefix", "expected"),
    [
        pytest.param("/api/vm/status/", "/api", "/vm/status", id="slash"),
        pytest.param("/api/vm/status", "/api", "/vm/status", id="no-slash"),
        pytest.param("/api/vm/status//", "/api", "/vm/status/", id="one-slash-only"),
        pytest.param("/api", "/api", None, id="prefix-alone"),
        pytest.param("/api/", "/api", "/", id="prefix-slash"),
        pytest.param("/apivm/status", "/api", None, id="glued"),
        pytest.param("/vm/status/", "/api", None, id="outside"),
        pytest.param("/v1/api/vm/status", "/v1/api", "/vm/status", id="deep-prefix"),
        pytest.param("/vm/status/", "", "/vm/status", id="no-prefix"),
        pytest.param("/", "", "/", id="root"),
    ],
)
def test_strip_prefix(path: str, prefix: str, expected: str | None) -> None:
    assert strip_prefix(path, prefix) == expected


def test_query_data_last_value_wins() -> None:
    assert query_data([("a", "1"), ("b", ""), ("a", "2")]) == {"a": "2", "b": ""}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b"", {}, id="empty"),
        pytest.param(b" \r\n", {}, id="blank"),
        pytest.param(b'{"force": true}', {"force": True}, id="object"),
        pytest.param(b"null", Reply(400, {"detail": "Malformed request: body is not a JSON "
                                                     "object"}), id="null"),
        pytest.param(b"{", Reply(400, {"detail": "Malformed request: body is not JSON "
                                                 "(Expecting property name enclosed in double "
                                                 "quotes at position 1)"}), id="truncated"),
    ],
)
def test_body_data(body: bytes, expected: object) -> None:
    assert body_data(body) == expected


@pytest.mark.parametrize(
    ("body", "task_id"),
    [
        pytest.param({"status": "PENDING", "result": None, "task_id": "0-a"}, "0-a", id="task"),
        pytest.param({"detail": "VM not found"}, None, id="detail"),
        pytest.param({"task_id": "0-a"}, None, id="no-status"),
        pytest.param({"status": "SUCCESS", "task_id": ""}, None, id="empty-id"),
        pytest.param({"status": "SUCCESS", "task_id": 7}, None, id="not-a-string"),
    ],
)
def test_task_header(body: dict[str, object], task_id: str | None) -> None:
    assert task_id_of(body) == task_id
    headers = reply_headers(Reply(201, body))
    assert headers.get("es_task_id") == task_id
    assert headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("accept", "indent"),
    [
        pytest.param("application/json; indent=4", 4, id="es"),
        pytest.param("application/json;indent=2, text/html", 2, id="compact"),
        pytest.param("text/html, application/json; q=0.9; indent=20", 8, id="capped"),
        pytest.param("application/json; indent=0", None, id="zero"),
        pytest.param("application/json; indent=x", None, id="not-a-number"),
        pytest.param("application/json", None, id="none"),
        pytest.param("", None, id="empty"),
    ],
)
def test_accept_indent(accept: str, indent: int | None) -> None:
    assert accept_indent(accept) == indent


def test_render_is_utf8_json() -> None:
    assert render({"a": "é", "b": [1]}) == '{"a":"é","b":[1]}'.encode()
    assert render({"a": 1}, 2) == b'{\n  "a": 1\n}'


def test_keepalive_schedule_is_upstreams() -> None:
    # api/middleware.py picks each nap from the time elapsed before it: 1 s while <= 5 s,
    # 3 s while <= 30 s, 6 s while <= 60 s, 12 s while <= 1200 s, then 30 s.
    offsets = list(itertools.islice(keepalive_offsets(), 130))
    assert offsets[:14] == [1, 2, 3, 4, 5, 6, 9, 12, 15, 18, 21, 24, 27, 30]
    assert offsets[14:22] == [33, 39, 45, 51, 57, 63, 75, 87]
    late = offsets[offsets.index(1191):][:4]
    assert late == [1191, 1203, 1233, 1263]


@pytest.mark.parametrize(
    ("route", "kind"),
    [
        pytest.param(Route(Kind.LIST), "list", id="list"),
        pytest.param(Route(Kind.STATUS, "vm", "start"), "get", id="get-quirk"),
        pytest.param(Route(Kind.CURRENT_GET, "vm", "current"), "current", id="current-get"),
        pytest.param(Route(Kind.CURRENT_PUT, "vm", "current"), "current", id="current-put"),
        pytest.param(Route(Kind.ACTION, "vm", "stop"), "stop", id="stop"),
        pytest.param(Route(Kind.ACTION, "vm", "bogus"), "other", id="bad-action"),
        pytest.param(Route(Kind.ACTION, "vm", ""), "other", id="no-action"),
        pytest.param(Route(Kind.DEFINE, "vm"), "define", id="define"),
        pytest.param(Route(Kind.TASK, task_id="0-a"), "task", id="task"),
        pytest.param(None, "other", id="unrouted"),
    ],
)
def test_request_kind(route: Route | None, kind: str) -> None:
    assert request_kind(route) == kind


KEYS = KeyRing({"k" * 16: "admin", "alice-key-0123456789": "alice"})
NOT_AUTHENTICATED = Reply(403, {"detail": "Authentication credentials were not provided."})


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"ES-API-KEY": "k" * 16}, "admin", id="api-key"),
        pytest.param({"es-api-key": "alice-key-0123456789"}, "alice", id="api-key-case"),
        pytest.param({"Authorization": "Token " + "k" * 16}, "admin", id="token"),
        pytest.param({"Authorization": "TOKEN  alice-key-0123456789 "}, "alice",
                     id="token-whitespace"),
        pytest.param({"ES-API-KEY": "k" * 16, "Authorization": "Token nope"}, "admin",
                     id="api-key-wins"),
        pytest.param({"ES-API-KEY": "", "Authorization": "Token " + "k" * 16}, "admin",
                     id="empty-api-key-falls-through"),
        pytest.param({}, NOT_AUTHENTICATED, id="none"),
        pytest.param({"Authorization": "Bearer " + "k" * 16}, NOT_AUTHENTICATED,
                     id="bearer"),
        pytest.param({"Authorization": ""}, NOT_AUTHENTICATED, id="empty-authorization"),
        pytest.param({"ES-API-KEY": "k" * 15}, Reply(403, {"detail": "Invalid API key"}),
                     id="unknown-api-key"),
        pytest.param({"Authorization": "Token x"}, Reply(403, {"detail": "Invalid token."}),
                     id="unknown-token"),
        pytest.param({"Authorization": "Token"}, Reply(403, {
            "detail": "Invalid token header. No credentials provided."}), id="token-alone"),
        pytest.param({"Authorization": "Token a b"}, Reply(403, {
            "detail": "Invalid token header. Token string should not contain spaces."}),
            id="token-spaces"),
    ],
)
def test_authenticate(headers: dict[str, str], expected: object) -> None:
    assert KEYS.authenticate(CIMultiDict(headers)) == expected


def test_keys_are_kept_as_digests() -> None:
    assert len(KEYS) == 2
    assert KEYS.principals == {"admin", "alice"}
    assert "alice-key-0123456789" not in repr(vars(KEYS))
