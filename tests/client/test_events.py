"""Following vmd.events (vmd.bus.follow, vmd.client.events, `vmctl events`): what a user may
bind is the broker's decision, a cut connection is rebuilt with a note, and the command
line and lines printed (pure parts)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from support.bus import publish_events
from support.proxy import TcpProxy

from vmd.bus import Bus, BusSettings, Event
from vmd.bus.topology import PUBLIC
from vmd.cli.vmctl_args import EventsInvocation, UsageError, parse_argv
from vmd.cli.vmctl_events import event_line, json_line
from vmd.cli.vmctl_output import HISTORY_COLUMNS, render_table
from vmd.client import BindRefused, EventFollower, EventMessage, follow, matches
from vmd.client.events import status_bindings
from vmd.model import Reply

ALICE_OWNER = "8a1a4e6c-0000-4000-8000-000000000001"
BOB_OWNER = "8a1a4e6c-0000-4000-8000-000000000002"
UUID_A = "5d1a1b4e-1b7c-4b2e-9a8f-00000000000a"
UUID_B = "5d1a1b4e-1b7c-4b2e-9a8f-00000000000b"


def _event(owner: str, uuid: str, seq: int, task: str | None = "0-t") -> Event:
    body = {"uuid": uuid, "hostname": f"{uuid[-1]}.example.com", "alias": "x", "node": "node1",
            "owner_uuid": owner, "status": "running", "previous": "starting",
            "status_change": "2026-12-03T14:05:01.123Z", "seq": seq, "task_id": task,
            "cause": "task" if task else "node", "principal": "alice" if task else None}
    return Event(f"vm.{owner}.{uuid}.status_change", body)


@pytest.fixture
async def daemon_bus(bus_settings: Callable[..., BusSettings]) -> AsyncIterator[Bus]:
    async with Bus(bus_settings("vmd"), topology=PUBLIC) as bus:
        yield bus


async def _next(events: EventFollower) -> EventMessage:
    return await asyncio.wait_for(anext(events), 10)


async def test_owners_bind_their_own_and_admins_all(
    daemon_bus: Bus, bus_settings: Callable[..., BusSettings],
) -> None:
    async with (follow(bus_settings("admin")) as every,
                follow(bus_settings("alice"), owners=[ALICE_OWNER]) as own):
        await publish_events(daemon_bus, [_event(BOB_OWNER, UUID_B, 1),
                                          _event(ALICE_OWNER, UUID_A, 1)])
        seen = [await _next(every), await _next(every)]
        assert [e.body["uuid"] for e in seen] == [UUID_B, UUID_A]
        mine = await _next(own)
        assert (mine.routing_key, mine.body["seq"]) == (
            f"vm.{ALICE_OWNER}.{UUID_A}.status_change", 1)
    with pytest.raises(BindRefused, match=r"refused binding 'vm\.\*\.\*\.status_change'"):
        async with follow(bus_settings("alice")):
            pass
    with pytest.raises(BindRefused):
        async with follow(bus_settings("bob"), owners=[ALICE_OWNER]):
            pass


async def test_a_cut_connection_is_rebuilt_with_a_note(
    daemon_bus: Bus, bus_settings: Callable[..., BusSettings], amqp_proxy: TcpProxy,
    amqp_url_for: Callable[[str], str],
) -> None:
    url = amqp_url_for("admin").replace(":5672/", f":{amqp_proxy.port}/")
    notes: list[str] = []
    async with EventFollower(bus_settings("admin", url=url), status_bindings(),
                             notify=notes.append) as events:
        await publish_events(daemon_bus, [_event(ALICE_OWNER, UUID_A, 1)])
        assert (await _next(events)).body["seq"] == 1
        amqp_proxy.cut()
        for _ in range(200):
            if events.reconnects:
                break
            await asyncio.sleep(0.05)
        assert events.reconnects == 1
        await publish_events(daemon_bus, [_event(ALICE_OWNER, UUID_A, 2)])
        assert (await _next(events)).body["seq"] == 2
    assert notes[0] == "connection to the broker lost; reconnecting"
    assert notes[1].startswith("connection to the broker back")
    assert len(notes) == 2  # closing is not a loss


def test_filters_and_lines() -> None:
    a = EventMessage(f"vm.{ALICE_OWNER}.{UUID_A}.status_change",
                     _event(ALICE_OWNER, UUID_A, 3).body)
    assert matches(a) and matches(a, vm=UUID_A) and matches(a, vm="a.example.com")
    assert not matches(a, vm="b.example.com") and not matches(a, task="0-other")
    assert matches(a, vm=UUID_A, task="0-t")
    assert event_line(a) == ("2026-12-03T14:05:01.123Z  a.example.com  starting → running"
                             "  cause=task  principal=alice  task=0-t")
    crash = EventMessage("k", _event(ALICE_OWNER, UUID_A, 4, task=None).body)
    assert event_line(crash).endswith("cause=node  principal=-  task=-")
    assert json.loads(json_line(a)) == {"routing_key": a.routing_key, "event": a.body}
    assert status_bindings() == ["vm.*.*.status_change"]
    assert status_bindings([ALICE_OWNER, ALICE_OWNER, BOB_OWNER]) == [
        f"vm.{ALICE_OWNER}.*.status_change", f"vm.{BOB_OWNER}.*.status_change"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["events"], EventsInvocation(url="amqp://u:p@h/v"), id="plain"),
        pytest.param(["events", "--vm", "web01", "--task", "0-x", "--json", "--owner", "o1",
                      "--owner=o2"],
                     EventsInvocation(url="amqp://u:p@h/v", vm="web01", task="0-x",
                                      owners=("o1", "o2"), json=True), id="all"),
        pytest.param(["-u", "amqp://a:b@c/d", "events"], EventsInvocation(url="amqp://a:b@c/d"),
                     id="url"),
    ],
)
def test_events_command_line(argv: list[str], expected: EventsInvocation) -> None:
    assert parse_argv(argv, {"VMD_URL": "amqp://u:p@h/v"}) == expected


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["events", "/vm/status"], id="a-path"),
        pytest.param(["get", "/vm/status", "--vm", "x"], id="events-option-elsewhere"),
        pytest.param(["events", "--vm="], id="empty-vm"),
        pytest.param(["events", "--task"], id="no-value"),
    ],
)
def test_events_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_argv(argv, {})


def test_history_table() -> None:
    entries: list[dict[str, Any]] = [
        {"seq": 3, "status": "running", "previous": "starting",
         "status_change": "2026-12-03T14:05:01.123Z", "cause": "task", "task_id": "0-t",
         "principal": "alice"},
        {"seq": 2, "status": "starting", "previous": "stopped", "status_change": None,
         "cause": "sync", "task_id": None, "principal": None},
    ]
    reply = Reply(200, {"status": "SUCCESS", "result": entries, "task_id": "0-x"})
    table = render_table(reply, "/vm/web01/status/history")
    assert table is not None
    header, _rule, first, second = table.splitlines()
    assert header.split() == list(HISTORY_COLUMNS)
    assert first.split() == ["3", "2026-12-03T14:05:01.123Z", "starting", "running", "task",
                             "alice", "0-t"]
    assert second.split() == ["2", "-", "stopped", "starting", "sync", "-", "-"]
    empty = Reply(200, {"status": "SUCCESS", "result": [], "task_id": "0-x"})
    assert render_table(empty, "/vm/web01/status/history/") is not None
