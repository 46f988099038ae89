"""Input checking and reports for `vmd-vmadm-ctl`: knobs, raw edits, calls, dump.

Values on the command line are JSON when they parse as JSON, else plain strings
(`stuck_state=down`, `alias=web01`); `null` resets a knob to its default.
"""

from __future__ import annotations

import json
import time

from vmd.sim import store, vmobj
from vmd.sim.env import iso

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from vmd.sim.env import Env

    Json = dict[str, Any]
    Check = Callable[[str, Any, bool], Any]

BOOL_KNOBS = ("guest_honors_shutdown", "boot_crash", "boot_hang", "vmadmd_down")
SECONDS_KNOBS = ("shutdown_seconds", "boot_seconds", "reboot_seconds")
STUCK_STATES = ("shutting_down", "down")
RECENT_CALLS = 20


class KnobError(Exception):
    """A knob or raw value that does not make sense (one line, exit 2)."""


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
        return value.lower() in ("true", "yes")
    raise KnobError(f"{key} must be true or false")


def _pairs(pairs: list[str]) -> list[tuple[str, Any]]:
    out = []
    for pair in pairs:
        key, eq, raw = pair.partition("=")
        if not eq or not key:
            raise KnobError(f"expected key=value, got {pair!r}")
        out.append((key, _value(raw)))
    return out


def _entries(key: str, value: Any, required: dict[str, type | tuple[type, ...]]) -> list[Json]:
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list) or not items:
        raise KnobError(f"{key} must be a JSON object or a non-empty list of objects")
    optional: dict[str, type | tuple[type, ...]] = {"stdout": str, "times": int, "stderr": str}
    for item in items:
        if not isinstance(item, dict):
            raise KnobError(f"{key} entries must be JSON objects")
        for field, typ in required.items():
            if not isinstance(item.get(field), typ) or isinstance(item.get(field), bool):
                raise KnobError(f"{key} entries need {field!r} ({_tname(typ)})")
        for field, typ in optional.items():
            if field in item and field not in required and not isinstance(item[field], typ):
                raise KnobError(f"{key}: {field!r} must be {_tname(typ)}")
        if "times" in item and (isinstance(item["times"], bool) or item["times"] < 1):
            raise KnobError(f"{key}: 'times' must be an integer >= 1")
        unknown = set(item) - set(required) - set(optional)
        if unknown:
            raise KnobError(f"{key}: unknown field(s) {', '.join(sorted(unknown))}")
    return items


def _tname(typ: type | tuple[type, ...]) -> str:
    return "a number" if isinstance(typ, tuple) else {str: "a string", int: "an integer"}[typ]


def _as_bool(key: str, value: Any, global_target: bool) -> bool:
    return _bool(key, value)


def _as_seconds(key: str, value: Any, global_target: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise KnobError(f"{key} must be a number of simulated seconds >= 0")
    return float(value)


def _as_stuck_state(key: str, value: Any, global_target: bool) -> Any:
    if value not in STUCK_STATES:
        raise KnobError(f"stuck_state must be one of {', '.join(STUCK_STATES)} or null")
    return value


def _as_entries(required: dict[str, type | tuple[type, ...]]) -> Check:
    """The check of a list knob whose entries need the `required` fields."""
    return lambda key, value, global_target: _entries(key, value, required)


def _as_event_count(key: str, value: Any, global_target: bool) -> int:
    if not global_target:
        raise KnobError("events_die_after is a node-wide knob: use 'fault global ...'")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise KnobError("events_die_after must be a number of events >= 1")
    return value


# Each knob's check: (name, value, whether the target is node-wide) -> the value to keep.
_CHECKS: dict[str, Check] = {
    **dict.fromkeys(BOOL_KNOBS, _as_bool),
    **dict.fromkeys(SECONDS_KNOBS, _as_seconds),
    "stuck_state": _as_stuck_state,
    "fail_next": _as_entries({"cmd": str, "stderr": str, "exit": int}),
    "hang_next": _as_entries({"cmd": str}),
    "delay_next": _as_entries({"cmd": str, "seconds": (int, float)}),
    "events_die_after": _as_event_count,
}


def parse_knobs(pairs: list[str], *, global_target: bool) -> Json:
    """Checked knob values by name (None = back to the default)."""
    out: Json = {}
    for key, value in _pairs(pairs):
        if key not in vmobj.DEFAULT_KNOBS:
            raise KnobError(f"unknown knob {key!r} (one of: {', '.join(vmobj.DEFAULT_KNOBS)})")
        if value is None:
            out[key] = None
            continue
        check = _CHECKS.get(key)
        if check is not None:
            out[key] = check(key, value, global_target)
    return out


def parse_set(pairs: list[str]) -> Json:
    values: Json = {}
    for key, value in _pairs(pairs):
        if key in ("state", "uuid", "zonename"):
            raise KnobError(
                f"{key} cannot be set (state is derived: set zone_state, transition,"
                " failed or provisioning)"
            )
        if key == "transition" and isinstance(value, str):
            try:
                value = vmobj.parse_transition(value)
            except ValueError as exc:
                raise KnobError(str(exc)) from None
        if key == "zone_state" and not isinstance(value, str):
            raise KnobError("zone_state must be a string")
        values[key] = value
    return values


def apply_set(rec: Json, values: Json, pid: int, zoneid: int) -> None:
    """Raw edits; a zone set to running gets a new boot, one set to installed loses it."""
    rt = rec["rt"]
    for key, value in values.items():
        target = rt if key in vmobj.RT_KEYS else rec["config"]
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    zone_state = values.get("zone_state")
    if zone_state == "running" and "pid" not in rt:
        vmobj.boot(rt, time.time(), pid, zoneid)
    elif zone_state is not None and zone_state != "running":
        for key in vmobj.RUNNING_ONLY:
            rt.pop(key, None)


def _calls(env: Env) -> list[Json]:
    """Invocations in start order, each with its end record (or none yet)."""
    starts: list[Json] = []
    ends: dict[str, Json] = {}
    try:
        with open(env.path(store.CALLS), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return []
    for line in raw.split(b"\n"):
        if not line:
            continue
        entry = json.loads(line)
        if entry.get("ev") == "start":
            starts.append(entry)
        else:
            ends[entry.get("id", "")] = entry
    for s in starts:
        s["end"] = ends.get(s["id"])
    return starts


def call_lines(env: Env, uuid: str | None, *, req_id: bool = False) -> list[str]:
    """`<argv joined> -> exit N`; `-> running` while alive, `-> killed` if it died silently.
    A `vmd-zonecfg` call starts with `zonecfg`; `req_id`: each line starts with the call's
    `REQ_ID=<id> ` (when it had one)."""
    lines = []
    for call in _calls(env):
        argv = [str(a) for a in call.get("argv", [])]
        if call.get("prog"):
            argv.insert(0, str(call["prog"]))
        if uuid is not None and not any(uuid in a for a in argv):
            continue
        end = call["end"]
        if end is not None:
            outcome = f"exit {end['exit']}"
        elif store.owner_alive(call):
            outcome = "running"
        else:
            outcome = "killed"
        prefix = f"REQ_ID={call['req_id']} " if req_id and "req_id" in call else ""
        lines.append(f"{prefix}{' '.join(argv)} -> {outcome}")
    return lines


def dump(env: Env) -> Json:
    from vmd.sim.world import World

    now = time.time()
    with World(env) as w:
        w.settle()
        uuids = w.uuids()
        vms = {u: vmobj.render(r) for u in uuids if (r := w.rec(u)) is not None}
        sims = {u: w.vm_sim(u) for u in uuids}
        sim = dict(w.sim())
        sched = [dict(s, due_in=round(s["due"] - now, 3)) for s in w.schedule()]
    return {
        "now": iso(now),
        "timescale": env.scale,
        "node": sim,
        "vms": vms,
        "vm_sim": sims,
        "schedule": sorted(sched, key=lambda s: (s["due"], s["id"])),
        "recent_calls": call_lines(env, None)[-RECENT_CALLS:],
    }
