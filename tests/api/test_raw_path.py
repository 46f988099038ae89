"""Issue 12: the gateway routes on the raw path's segments, and decodes bodies strictly.

`/api/vm/x%2Fstatus%2Fcurrent/` was decoded to `/api/vm/x/status/current/` before routing,
so an encoded `/` reached another route than the one its segments spell; it is a 404 now
(docs/api.md). A body with a lone surrogate or a non-finite number is the daemon's 400,
answered by the gateway without publishing anything.
"""

from __future__ import annotations

import json

import aiohttp
import pytest
from yarl import URL

from vmd.api.translate import encoded_slash

from .conftest import MakeGateway
from .helpers import admin, fetch
from .responder import VM, Responder


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/api/vm/x%2Fstatus%2Fcurrent/", id="status-current-inside-a-name"),
        pytest.param("/api/vm/x%2fstatus%2fcurrent/", id="lower-case"),
        pytest.param(f"/api/vm/{VM}/status%2Fstart/", id="inside-the-route"),
        pytest.param("/api%2Fvm/status/", id="inside-the-prefix"),
        pytest.param(f"/api/vm/{VM}%2F/status/", id="trailing-in-a-name"),
    ],
)
async def test_an_encoded_slash_is_404(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession,
        path: str) -> None:
    gateway = await make_gateway()
    base = gateway.url.removesuffix("/api")
    url = URL(f"{base}{path}", encoded=True)
    for method in ("GET", "PUT"):
        status, _, text = await fetch(http, method, url, headers=admin())
        assert (status, json.loads(text)) == (404, {"detail": "Not found"})
    assert responder.seen == []


async def test_other_escapes_still_route(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession) -> None:
    gateway = await make_gateway()
    escaped = "".join(f"%{ord(c):02X}" for c in VM)  # every character of the name escaped
    url = URL(f"{gateway.url}/vm/{escaped}/%73tatus/", encoded=True)  # %73: "s"
    status, _, _ = await fetch(http, "GET", url, headers=admin())
    assert status == 200
    [seen] = responder.seen
    assert seen.path == f"/vm/{VM}/status"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(rb'{"cdimage": "\ud800"}', r"a lone surrogate \ud800 in a string",
                     id="surrogate"),
        pytest.param(rb'{"\udfff": true}', r"a lone surrogate \udfff in a string", id="key"),
        pytest.param(b'{"timeout": 1e400}', "a number is out of range", id="1e400"),
        pytest.param(b'{"timeout": -Infinity}', "-Infinity is not a JSON value", id="infinity"),
    ],
)
async def test_a_body_no_answer_could_echo_is_400(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession,
        body: bytes, reason: str) -> None:
    gateway = await make_gateway()
    status, _, text = await fetch(http, "PUT", f"{gateway.url}/vm/{VM}/status/start/",
                                  headers=admin(), data=body)
    assert (status, json.loads(text)) == (
        400, {"detail": f"Malformed request: body is not JSON ({reason})"})
    assert responder.seen == []


@pytest.mark.parametrize(
    ("raw", "refused"),
    [
        pytest.param("/api/vm/a%2Fb/status", True, id="upper"),
        pytest.param("/api/vm/a%2fb/status", True, id="lower"),
        pytest.param("/api/vm/a%252Fb/status", False, id="an-escaped-percent"),
        pytest.param("/api/vm/a%2Eb/status", False, id="other-escape"),
        pytest.param("/api/vm/a/status/", False, id="plain"),
    ],
)
def test_encoded_slash(raw: str, refused: bool) -> None:
    assert encoded_slash(raw) is refused


async def test_a_query_cannot_carry_a_surrogate(
        make_gateway: MakeGateway, responder: Responder, http: aiohttp.ClientSession) -> None:
    """A GET's `data` comes from the query string, which aiohttp decodes as UTF-8 with
    replacement: the UTF-8 spelling of a surrogate (%ED%A0%80) arrives as U+FFFD, never as
    a lone surrogate the request body could not carry."""
    gateway = await make_gateway()
    url = URL(f"{gateway.url}/vm/{VM}/status/?x=%ED%A0%80", encoded=True)
    status, _, _ = await fetch(http, "GET", url, headers=admin())
    assert status == 200
    [seen] = responder.seen
    assert seen.data == {"x": "\ufffd" * 3}
