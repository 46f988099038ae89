"""A tenant's lone surrogate in vmadm's output reaches the agent's reports as U+FFFD.

vmadm writes a lone UTF-16 surrogate in a string as a `\\ud800` escape; decoded as is, the
string cannot be encoded as UTF-8, and the agent's report holding it would raise at every
listing (vmd.node_agent.driver.nodejson)."""

from __future__ import annotations

import orjson

from vmd.node_agent.driver import nodejson
from vmd.node_agent.driver.events import parse_event

from .conftest import DriverFactory, Sim


def test_lone_surrogates_become_replacement_characters() -> None:
    text = '{"alias": "a\\ud800b", "\\udfff": ["\\uDBFF", "ok \\ud83d\\ude00"], "n": 1}'
    value = nodejson.loads(text)
    assert value == {"alias": "a\ufffdb", "\ufffd": ["\ufffd", "ok \U0001f600"], "n": 1}
    orjson.dumps(value)  # encodable: raises on a lone surrogate
    assert nodejson.loads(text.encode()) == value
    assert nodejson.loads('{"a": "\\u00e9"}') == {"a": "\u00e9"}


def test_an_event_line_with_a_lone_surrogate_is_reportable() -> None:
    line = ('{"type": "modify", "zonename": "8a1a4e6c-0000-4000-8000-00000000aaaa", '
            '"date": "2026-12-03T12:00:00.000Z", "vm": {"alias": "\\ud800", "state": '
            '"running", "uuid": "8a1a4e6c-0000-4000-8000-00000000aaaa"}, "changes": []}')
    event = parse_event(line)
    orjson.dumps(repr(event))


async def test_listing_and_get_of_a_vm_whose_alias_has_a_lone_surrogate(
        make_driver: DriverFactory, sim: Sim) -> None:
    vmadm = await make_driver()
    u = await sim.create("kvm", "stopped", hostname="s.example.com")
    await sim.ctl("set", u, 'alias="bad\\ud800alias"')  # JSON text: a lone surrogate
    vm = await vmadm.get(u)
    assert vm is not None and vm["alias"] == "bad\ufffdalias"
    listing = await vmadm.listing()
    orjson.dumps(listing)
    assert listing[u]["alias"] == "bad\ufffdalias"
