"""Issue 12, finding 1: a value JSON text can spell but no answer can carry is a 400 at the
edge. Each of these requests stopped the daemon before the codec refused them: the 405 and
the invalid-choice answers echo the value (`\\ud800` cannot be encoded as UTF-8) and
`1e400` decoded to `inf` (not JSON: the staged definition could not be stored)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vmd.model import Reply

from .conftest import Cloud
from .harness import RawRequester


@pytest.mark.parametrize(
    ("user", "body", "reason"),
    [
        pytest.param("alice", rb'{"method": "\ud800", "path": "/vm/status"}',
                     r"a lone surrogate \ud800 in a string", id="method-405-echo"),
        pytest.param("alice", rb'{"method": "PUT", "path": "/vm/web02.example.com/status/start",'
                     rb' "data": {"cdimage": "\udfff"}}',
                     r"a lone surrogate \udfff in a string", id="cdimage-choice-echo"),
        pytest.param("alice", rb'{"method": "GET", "path": "/vm/\udc00/status"}',
                     r"a lone surrogate \udc00 in a string", id="path"),
        pytest.param("admin", rb'{"method": "PUT", "path": "/vm/web02.example.com/define",'
                     rb' "data": {"ram": 1e400}}', "a number is out of range", id="define-1e400"),
        pytest.param("admin", rb'{"method": "PUT", "path": "/vm/web02.example.com/status/stop",'
                     rb' "data": {"timeout": -1e400}}', "a number is out of range",
                     id="timeout-minus-1e400"),
    ],
)
async def test_refused_at_the_edge_and_the_daemon_goes_on(
    cloud: Cloud, raw: Callable[..., Any], user: str, body: bytes, reason: str,
) -> None:
    requester: RawRequester = await raw(user)
    cid = await requester.send(body, message_id="m-hostile")
    (reply,) = await requester.replies_for(cid)
    assert reply == Reply(400, {"detail": f"Malformed request: body is not JSON ({reason})"})
    # The next request is answered: the daemon still runs.
    cid = await requester.send({"method": "GET", "path": "/vm/web02.example.com/status"})
    (after,) = await requester.replies_for(cid)
    assert after.code == 200
    assert cloud.daemon.running
    assert cloud.vm("web02.example.com").pending_definition is None
