"""`vmadm events [-f] [-j] [-r] [uuid]`: the vminfod event stream (docs/driver.md, vmadm fact 7).

A consistent start: under the lock, the current VMs (the `ready` line) and the
journal's length are taken together, so every later change is printed exactly once.
Then the loop settles the world (so scheduled steps happen even when only this
stream watches), prints new complete journal lines, flushes each, and sleeps one
poll interval. Nothing goes to stderr in normal operation; a closed stdout ends the
stream with exit 0. A "vminfod restart" (`vmd-vmadm-ctl events-kill`, or the
`events_die_after` knob) makes the stream die as the real one does: one line on
stderr, exit 134 (node's abort on an uncaught error).
"""

from __future__ import annotations

import json
import os
import sys
import time

from vmd.sim import store, vmobj
from vmd.sim.clock import settle_if_due
from vmd.sim.cmdio import Fail
from vmd.sim.env import iso, new_uuid
from vmd.sim.world import World

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from vmd.sim.cmdio import Io
    from vmd.sim.env import Env

    Json = dict[str, Any]

ABORT_EXIT = 134
READ_CHUNK = 1 << 20


def _text_base(ev: Json, full: bool, alias: str | None) -> str:
    date = str(ev["date"])
    when = date if full else date[date.index("T") + 1 :]
    zn = str(ev.get("zonename", ""))
    if not full:
        zn = zn[:8]
    a = alias or "-"
    if len(a) > 30:
        a = a[:27] + "..."
    return f"[{when}] {zn} {a} {ev['type']}"


def _js(value: Any, present: bool) -> str:
    return store.dumps(value) if present else "undefined"


def format_text(ev: Json, full: bool) -> list[str]:
    """The default (non -j) lines of one event."""
    if ev["type"] == "ready":
        when = ev["date"] if full else ev["date"][ev["date"].index("T") + 1 :]
        return [f"[{when}] ready (uuid {ev['uuid']})" if full else f"[{when}] ready"]
    vm = ev.get("vm") or {}
    base = _text_base(ev, full, vm.get("alias"))
    if ev["type"] != "modify":
        return [base]
    return [
        f"{base}: {c['prettyPath']} {c['action']} :: "
        f"{_js(c.get('oldValue'), 'oldValue' in c)} -> {_js(c.get('newValue'), 'newValue' in c)}"
        for c in ev.get("changes", [])
    ]


class _Stream:
    def __init__(self, env: Env, io: Io, *, json_out: bool, full: bool) -> None:
        self.env = env
        self.io = io
        self.json_out = json_out
        self.full = full

    def emit(self, ev: Json) -> None:
        lines = [store.dumps(ev)] if self.json_out else format_text(ev, self.full)
        # One write and one flush per event: a reader sees whole lines at once.
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()


def _die(io: Io, why: str) -> int:
    io.err(f"vmadm events: vminfod stream error: {why}")
    return ABORT_EXIT


def events(env: Env, io: Io, opts: Json, args: list[str]) -> int:
    uuid = args[0] if args else None
    settle_if_due(env)
    with World(env) as w:
        w.settle()
    # A second transaction that changes nothing: its snapshot and the journal length
    # are taken under one lock, after the settle's events were appended.
    with World(env) as w:
        if uuid is not None and w.rec(uuid) is None:
            raise Fail(f"VM {uuid} not found")
        uuids = [uuid] if uuid is not None else w.uuids()
        vms: Json = {}
        for u in uuids:
            rec = w.rec(u)
            if rec is not None:
                vms[u] = vmobj.render(rec)
        journal = env.path(store.JOURNAL)
        offset = os.path.getsize(journal) if os.path.exists(journal) else 0
        sim = w.sim()
        epoch = sim.get("vminfod_epoch", 0)
        die_after = w.knobs(None).get("events_die_after")
    stream = _Stream(env, io, json_out=bool(opts.get("json")), full=bool(opts.get("full")))
    if opts.get("ready"):
        stream.emit({"type": "ready", "date": iso(time.time()), "uuid": new_uuid(), "vms": vms})
    printed = 0
    sim_path = env.path(store.SIM)
    sim_mtime = _mtime(sim_path)
    pending = b""
    while True:
        if not os.path.isdir(env.root):
            return _die(io, f"state directory {env.root} is gone")
        settle_if_due(env)
        size = os.path.getsize(journal) if os.path.exists(journal) else 0
        if size > offset:
            with open(journal, "rb") as f:
                f.seek(offset)
                chunk = f.read(min(size - offset, READ_CHUNK))
            offset += len(chunk)
            pending += chunk
            # Only complete lines: an append may be observed half-written.
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not line:
                    continue
                ev = json.loads(line)
                ev.pop("seq", None)
                if uuid is not None and ev.get("uuid") != uuid:
                    continue
                stream.emit(ev)
                printed += 1
                if isinstance(die_after, int) and printed >= die_after:
                    return _die(io, f"stream ended after {printed} events")
            continue  # drain a backlog before sleeping
        mtime = _mtime(sim_path)
        if mtime != sim_mtime:
            sim_mtime = mtime
            sim = store.read_json(sim_path, {}) or {}
            if sim.get("vminfod_epoch", 0) != epoch:
                return _die(io, "vminfod restarted")
            knob = sim.get("knobs", {}).get("events_die_after")
            die_after = knob if isinstance(knob, int) else None
        time.sleep(env.poll)


def _mtime(path: str) -> tuple[int, int]:
    """Identity of a file version (whole-file renames give each version a new inode)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (0, 0)
    return (st.st_ino, st.st_mtime_ns)
