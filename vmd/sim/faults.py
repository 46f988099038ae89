"""Injected failures of vmadm calls: `fail_next`, `hang_next`, `delay_next` (docs/simulator.md).

An entry `{"cmd": ...}` matches a call by the subcommand as typed, by its canonical
name (`boot` is `start`, `json` is `get`, `halt` is `stop`) or `*`. Knobs of the VM the
call names are consulted first, then the node-wide ones (`fault global ...`). A
matching entry is used up (`times`, default 1) under the lock before the command does
anything, so a failed call has no side effects.
"""

from __future__ import annotations

import time

from vmd.sim import store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from vmd.sim.cmdio import Io
    from vmd.sim.env import Env

    Json = dict[str, Any]


def _matching(entries: Any, names: tuple[str, ...]) -> list[Json]:
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and e.get("cmd") in names]


def take_faults(
    env: Env, cmd: str, canonical: str, uuid: str | None, *, any_cmd: bool = True
) -> Json:
    """Consume the injected faults that match this call (VM knobs first, then global).

    `any_cmd=False`: entries for `*` do not match (`vmd-zonecfg`: `*` means any vmadm call).
    """
    names = (cmd, canonical, "*") if any_cmd else (cmd, canonical)
    sources = [store.read_json(env.path(store.SIM), {}) or {}]
    if uuid is not None:
        sources.insert(0, store.read_json(store.vm_sim_path(env, uuid), {}) or {})
    kinds = ("delay_next", "hang_next", "fail_next")
    if not any(_matching(s.get("knobs", {}).get(k), names) for s in sources for k in kinds):
        return {}
    from vmd.sim.world import World

    taken: Json = {}
    with World(env) as w:
        holders: list[tuple[str | None, Json]] = []
        if uuid is not None:
            holders.append((uuid, w.vm_sim(uuid)))
        holders.append((None, w.sim()))
        for owner, holder in holders:
            knobs = holder.get("knobs", {})
            for kind in kinds:
                if kind in taken:
                    continue
                raw = knobs.get(kind)
                entries = [raw] if isinstance(raw, dict) else raw
                found = _matching(entries, names)
                if not found:
                    continue
                entry = found[0]
                taken[kind] = dict(entry)
                times = int(entry.get("times", 1)) - 1
                if times > 0:
                    entry["times"] = times
                else:
                    entries.remove(entry)
                knobs[kind] = entries
                # mark only what changed as dirty (an unknown VM gets no sim file)
                if owner is None:
                    w.touch_sim()
                else:
                    w.touch_vm_sim(owner)
    return taken


def apply_faults(env: Env, io: Io, faults: Json) -> int | None:
    """Delay, hang or fail as injected; returns an exit code when the call is over."""
    delay = faults.get("delay_next")
    if delay:
        time.sleep(env.seconds(float(delay.get("seconds", 0))))
    if faults.get("hang_next"):
        while True:  # until killed
            time.sleep(3600)
    fail = faults.get("fail_next")
    if fail:
        if fail.get("stdout"):
            text = str(fail["stdout"])
            io.out(text if text.endswith("\n") else text + "\n")
        if fail.get("stderr"):
            for line in str(fail["stderr"]).rstrip("\n").split("\n"):
                io.err(line)
        return int(fail.get("exit", 1))
    return None
