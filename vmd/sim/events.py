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
from typing import NamedTuple

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


class _Start(NamedTuple):
    """The consistent start: the VMs and the journal's length, taken under one lock."""

    vms: Json
    journal: str
    offset: int
    epoch: Any
    die_after: Any


def events(env: Env, io: Io, opts: Json, args: list[str]) -> int:
    uuid = args[0] if args else None
    start = _start(env, uuid)
    stream = _Stream(env, io, json_out=bool(opts.get("json")), full=bool(opts.get("full")))
    if opts.get("ready"):
        stream.emit({"type": "ready", "date": iso(time.time()), "uuid": new_uuid(),
                     "vms": start.vms})
    return _Tail(env, io, stream, uuid, start).run()


def _start(env: Env, uuid: str | None) -> _Start:
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
    return _Start(vms, journal, offset, epoch, die_after)


class _Tail:
    """The stream after its start: new journal lines out, a vminfod restart noticed."""

    def __init__(self, env: Env, io: Io, stream: _Stream, uuid: str | None,
                 start: _Start) -> None:
        self.env = env
        self.io = io
        self.stream = stream
        self.uuid = uuid
        self.journal = start.journal
        self.offset = start.offset
        self.epoch = start.epoch
        self.die_after = start.die_after
        self.printed = 0
        self.sim_path = env.path(store.SIM)
        self.sim_mtime = _mtime(self.sim_path)
        self.pending = b""

    def run(self) -> int:
        """Until the stream dies: its exit code."""
        env = self.env
        while True:
            if not os.path.isdir(env.root):
                return _die(self.io, f"state directory {env.root} is gone")
            settle_if_due(env)
            journal = self.journal
            size = os.path.getsize(journal) if os.path.exists(journal) else 0
            if size > self.offset:
                died = self._print_new(size)
                if died is not None:
                    return died
                continue  # drain a backlog before sleeping
            died = self._check_restart()
            if died is not None:
                return died
            time.sleep(env.poll)

    def _print_new(self, size: int) -> int | None:
        """Print the complete new journal lines (one read's worth); the exit code if the
        stream dies (`events_die_after`), else None."""
        with open(self.journal, "rb") as f:
            f.seek(self.offset)
            chunk = f.read(min(size - self.offset, READ_CHUNK))
        self.offset += len(chunk)
        self.pending += chunk
        # Only complete lines: an append may be observed half-written.
        *lines, self.pending = self.pending.split(b"\n")
        for line in lines:
            if not line:
                continue
            ev = json.loads(line)
            ev.pop("seq", None)
            if self.uuid is not None and ev.get("uuid") != self.uuid:
                continue
            self.stream.emit(ev)
            self.printed += 1
            if isinstance(self.die_after, int) and self.printed >= self.die_after:
                return _die(self.io, f"stream ended after {self.printed} events")
        return None

    def _check_restart(self) -> int | None:
        """When the simulator's state changed: the exit code if vminfod restarted, else
        None (and the `events_die_after` knob read again)."""
        mtime = _mtime(self.sim_path)
        if mtime == self.sim_mtime:
            return None
        self.sim_mtime = mtime
        sim = store.read_json(self.sim_path, {}) or {}
        if sim.get("vminfod_epoch", 0) != self.epoch:
            return _die(self.io, "vminfod restarted")
        knob = sim.get("knobs", {}).get("events_die_after")
        self.die_after = knob if isinstance(knob, int) else None
        return None


def _mtime(path: str) -> tuple[int, int]:
    """Identity of a file version (whole-file renames give each version a new inode)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (0, 0)
    return (st.st_ino, st.st_mtime_ns)
