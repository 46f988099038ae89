"""Input echoed in messages is cut (`replies.ECHO_LIMIT`): an answer is kept 24 h for
idempotency, so a huge echoed value would let a principal grow the daemon's memory by that
much per request. Found by the fault suite's fuzzer (tests/reliability, docs/reliability.md)."""

from __future__ import annotations

import pytest

from vmd.fsm import replies, route
from vmd.model import Reply

from .helpers import ALICE, put, world_in

LIMIT = replies.ECHO_LIMIT


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param("a.iso", "a.iso", id="short"),
        pytest.param("x" * LIMIT, "x" * LIMIT, id="at-the-limit"),
        pytest.param("x" * (LIMIT + 1), "x" * LIMIT + "...", id="one-over"),
        pytest.param("é" * 60_000, "é" * LIMIT + "...", id="huge-unicode"),
        pytest.param(["a"] * 50_000, str(["a"] * 50_000)[:LIMIT] + "...", id="huge-list"),
        pytest.param(10**200, str(10**200)[:LIMIT] + "...", id="huge-number"),
    ],
)
def test_echo(value: object, shown: str) -> None:
    assert replies.echo(value) == shown


def test_a_huge_cdimage_is_not_echoed_in_full() -> None:
    world, _, _ = world_in("stopped")
    d = put(world, ALICE, "start", {"cdimage": "a" * 60_000})
    assert d.reply is not None and d.reply.code == 400
    [message] = d.reply.body["result"]["cdimage"]
    assert message == (
        f"Select a valid choice. {'a' * LIMIT}... is not one of the available choices.")


def test_a_huge_method_is_not_echoed_in_full() -> None:
    reply = route("P" * 60_000, "/vm/status")
    assert isinstance(reply, Reply) and reply.code == 405
    assert reply.body["detail"] == f'Method "{"P" * LIMIT}..." not allowed.'
