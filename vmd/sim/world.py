"""One locked transaction over the simulated node, and the time model that settles it.

docs/simulator.md, How it works: everything a real node does asynchronously (a guest
finishing its shutdown, vmadmd's stop timer, a zone finishing its boot) is a
*scheduled step* `{vm, due, op, args, expect, owner?, vmadmd?}` in schedule.json.
Every invocation and every poll iteration of a blocking command or of `events`
settles the world first: under the lock it applies all due steps in due order.

- `expect` guards a step: if the VM moved on (another boot, a crash), the step is
  dropped instead of acting on a world it was not planned for.
- `owner` marks work a real `vmadm` process does itself (bhyve/OS forced halt): when
  that process is gone at due time, the step is dropped, so killing `vmadm stop`
  cancels it. vmadmd's work (KVM) has no owner and happens anyway.
- `vmadmd` steps are held (not dropped) while the `vmadmd_down` knob is set.

Each change of a VM object appends one `modify` event (with the diff of `vmd.sim.diff`) to the
journal; `last_modified` moves silently with it, as vminfod does.
"""

from __future__ import annotations

import json
import os
import signal
import time

from vmd.sim import store, vmobj
from vmd.sim.diff import diff
from vmd.sim.env import iso, new_uuid
from vmd.sim.ops import apply as apply_step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from vmd.sim.env import Env

    Json = dict[str, Any]

# vmadmd notices a halted KVM zone and clears its transition after this long.
VMADMD_REACTION = 0.1
_BLOCKED = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


class World:
    """Use as `with World(env) as w:`; changes are written when the block succeeds."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self._lock = store.Lock(env)
        self._recs: dict[str, Json | None] = {}
        self._dirty: set[str] = set()
        self._gone: set[str] = set()
        self._sim: Json | None = None
        self._sim_dirty = False
        self._vm_sims: dict[str, Json] = {}
        self._vm_sims_dirty: set[str] = set()
        self._sched: list[Json] | None = None
        self._sched_dirty = False
        self._events: list[Json] = []

    def __enter__(self) -> World:
        self._lock.__enter__()
        try:
            store.recover(self.env)  # a change its process died applying
        except BaseException:
            self._lock.__exit__()
            raise
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.commit()
        finally:
            self._lock.__exit__()

    # -- reading -----------------------------------------------------------------

    def sim(self) -> Json:
        if self._sim is None:
            self._sim = store.read_json(self.env.path(store.SIM), {}) or {}
        return self._sim

    def touch_sim(self) -> Json:
        self._sim_dirty = True
        return self.sim()

    def rec(self, uuid: str) -> Json | None:
        if uuid not in self._recs:
            self._recs[uuid] = store.read_json(store.vm_path(self.env, uuid))
        return self._recs[uuid]

    def uuids(self) -> list[str]:
        names = os.listdir(self.env.path("vms"))
        on_disk = {n[:-5] for n in names if n.endswith(".json") and not n.endswith(".sim.json")}
        on_disk |= {u for u, r in self._recs.items() if r is not None}
        return sorted(u for u in on_disk if u not in self._gone and self.rec(u) is not None)

    def vm_sim(self, uuid: str) -> Json:
        if uuid not in self._vm_sims:
            self._vm_sims[uuid] = store.read_json(store.vm_sim_path(self.env, uuid), {}) or {}
        return self._vm_sims[uuid]

    def touch_vm_sim(self, uuid: str) -> Json:
        self._vm_sims_dirty.add(uuid)
        return self.vm_sim(uuid)

    def knobs(self, uuid: str | None) -> Json:
        merged = dict(vmobj.DEFAULT_KNOBS)
        merged.update(self.sim().get("knobs", {}))
        if uuid is not None:
            merged.update(self.vm_sim(uuid).get("knobs", {}))
        return merged

    def schedule(self) -> list[Json]:
        if self._sched is None:
            self._sched = store.read_json(self.env.path(store.SCHEDULE), []) or []
        return self._sched

    def counter(self, name: str, start: int) -> int:
        return vmobj.next_counter(self.touch_sim(), name, start)

    # -- changing VMs ------------------------------------------------------------

    def mutate(self, uuid: str, fn: Callable[[Json], None]) -> bool:
        """Apply `fn` to the record; emit one `modify` event if the object changed."""
        rec = self.rec(uuid)
        if rec is None:
            raise KeyError(uuid)
        before = json.loads(store.dumps(vmobj.render(rec)))
        fn(rec)
        self._dirty.add(uuid)
        after = vmobj.render(rec)
        changes = diff(before, after)
        if not changes:
            return False
        rec["rt"]["last_modified"] = iso(time.time())
        after["last_modified"] = rec["rt"]["last_modified"]
        self._emit("modify", uuid, vm=after, changes=changes)
        self._react(uuid, rec)
        return True

    def set_rt(self, uuid: str, **values: Any) -> bool:
        def fn(rec: Json) -> None:
            for k, v in values.items():
                if v is None:
                    rec["rt"].pop(k, None)
                else:
                    rec["rt"][k] = v

        return self.mutate(uuid, fn)

    def set_config(self, uuid: str, **values: Any) -> bool:
        def fn(rec: Json) -> None:
            rec["config"].update(values)

        return self.mutate(uuid, fn)

    def create(self, rec: Json) -> None:
        uuid = rec["config"]["uuid"]
        self._recs[uuid] = rec
        self._gone.discard(uuid)
        self._dirty.add(uuid)
        self._emit("create", uuid, vm=vmobj.render(rec))

    def destroy(self, uuid: str) -> None:
        self._recs[uuid] = None
        self._gone.add(uuid)
        self._dirty.discard(uuid)
        sched = self.schedule()
        sched[:] = [s for s in sched if s["vm"] != uuid]
        self._sched_dirty = True
        self._emit("delete", uuid)

    def _emit(self, kind: str, uuid: str, **body: Any) -> None:
        ev: Json = {"type": kind, "date": iso(time.time()), "zonename": uuid, "uuid": uuid}
        ev.update(body)
        self._events.append(ev)

    def new_boot(self, uuid: str) -> None:
        """The zone of `uuid` reaches `running` now."""
        pid = self.counter("pid", 4000)
        zoneid = self.counter("zoneid", 0)
        self.mutate(uuid, lambda rec: vmobj.boot(rec["rt"], time.time(), pid, zoneid))

    # -- scheduling --------------------------------------------------------------

    def add_step(
        self,
        uuid: str,
        delay: float,
        op: str,
        *,
        args: Json | None = None,
        expect: Json | None = None,
        owned: bool = False,
        vmadmd: bool = False,
        label: str = "",
    ) -> Json:
        """Schedule `op` for `uuid` after `delay` simulated seconds."""
        step: Json = {
            "id": self.counter("step", 0),
            "vm": uuid,
            "due": time.time() + self.env.seconds(delay),
            "op": op,
            "args": args or {},
            "expect": expect or {},
            "label": label or op,
        }
        if owned:
            step["owner"] = store.owner_token()
        if vmadmd:
            step["vmadmd"] = True
        self.schedule().append(step)
        self._sched_dirty = True
        return step

    def pending(self, uuid: str, *, owned_by_me: bool = False, op: str | None = None) -> list[Json]:
        me = os.getpid()
        return [
            s
            for s in self.schedule()
            if s["vm"] == uuid
            and (op is None or s["op"] == op)
            and (not owned_by_me or s.get("owner", {}).get("pid") == me)
        ]

    def held(self, step: Json) -> bool:
        return bool(step.get("vmadmd")) and bool(self.knobs(step["vm"])["vmadmd_down"])

    def settle(self) -> None:
        """Apply every due step (steps may schedule further, already due, steps)."""
        sched = self.schedule()
        while True:
            now = time.time()
            due = [s for s in sched if s["due"] <= now and not self.held(s)]
            if not due:
                return
            step = min(due, key=lambda s: (s["due"], s["id"]))
            sched.remove(step)
            self._sched_dirty = True
            owner = step.get("owner")
            if owner is not None and not store.owner_alive(owner):
                continue
            rec = self.rec(step["vm"])
            if rec is None:
                continue
            if any(rec["rt"].get(k) != v for k, v in step["expect"].items()):
                continue
            apply_step(self, step)

    def shift(self, seconds: float) -> None:
        """Move simulated time forward: everything scheduled happens `seconds` sooner."""
        delta = self.env.seconds(seconds)
        for s in self.schedule():
            s["due"] -= delta
            if "expire" in s["args"]:  # vmadmd's timer matches the transition it was set for
                s["args"]["expire"] = int(s["args"]["expire"] - delta * 1000)
        self._sched_dirty = True
        for uuid in self.uuids():
            rec = self.rec(uuid)
            tr = rec["rt"].get("transition") if rec else None
            if rec is not None and tr:
                tr["expire"] = int(tr["expire"] - delta * 1000)
                self._dirty.add(uuid)

    def _react(self, uuid: str, rec: Json) -> None:
        """vmadmd watches KVM zones: a halted zone with a stop transition gets cleared."""
        tr = rec["rt"].get("transition")
        if (
            rec["config"].get("brand") == "kvm"
            and tr
            and tr.get("state") == "stopping"
            and rec["rt"].get("zone_state") == "installed"
            and not self.pending(uuid, op="vmadmd_halted")
        ):
            self.add_step(uuid, VMADMD_REACTION, "vmadmd_halted", vmadmd=True)

    # -- writing -----------------------------------------------------------------

    def commit(self) -> None:
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
        try:
            self._commit()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _commit(self) -> None:
        writes: dict[str, Any] = {}
        removes: list[str] = []
        for uuid in self._dirty:
            rec = self._recs.get(uuid)
            if rec is not None:
                writes[store.vm_path(self.env, uuid)] = rec
        for uuid in self._gone:
            removes += [store.vm_path(self.env, uuid), store.vm_sim_path(self.env, uuid)]
        for uuid in self._vm_sims_dirty - self._gone:
            writes[store.vm_sim_path(self.env, uuid)] = self._vm_sims[uuid]
        if self._sched_dirty:
            writes[self.env.path(store.SCHEDULE)] = self.schedule()
        # Records are applied before their events: a journal reader that looks a VM up
        # after an event finds at least that state.
        lines = []
        for ev in self._events:
            ev["seq"] = self.counter("seq", 0)
            lines.append(store.dumps(ev))
        if self._sim_dirty:
            sim = self.sim()
            sim.setdefault("server_uuid", new_uuid())
            writes[self.env.path(store.SIM)] = sim
        if writes or removes or lines:
            # One crash-safe change (store.commit): a SIGKILL half-way through is finished
            # by the next process that takes the lock.
            store.commit(self.env, {"write": writes, "remove": removes, "journal": lines})
        self._dirty.clear()
        self._gone.clear()
        self._vm_sims_dirty.clear()
        self._sched_dirty = False
        self._sim_dirty = False
        self._events.clear()
