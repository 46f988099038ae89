"""An in-process simulated hypervisor (`[agent] backend = "memory"`): for benchmarks and demos.

Why it exists: measuring the daemon and the agent protocol at 100k VMs must not be bounded
by spawning a `vmd-vmadm` process per call, and a demo must run without a compute node.
`MemoryNode` implements the agent's `Backend` operations (start, stop, reboot, update,
current, get, listing, isos, watch) on a dict, with vmadm's messages and exit codes for the
common cases (so outcomes classify as with the real tool) and instant or configurable tiny
durations. It is NOT a faithful vmadm: use the `vmd-vmadm` simulator to test behaviour.

Why it lives in the product and not under bench/ or tests/: its users run the real `vmd agent`
process (`bench/common.py` starts daemon and agents as processes; tests/agent/test_process.py,
tests/obs/test_obs_boot.py), so the agent must build it from its settings (`[agent] backend
= "memory"`, accepted by the settings schema), and a process cannot import a test-support
tree. It stays out of a production agent's way instead: `open_backend` imports this module
only when the settings ask for it, and nothing else in vmd/ imports it.

Seeded deterministically from the node name, so every run and every agent of a demo cluster
sees the same inventory: VM i (1-based) is `<node>-vm<i:04>.example.com` (node = the first
label of the node name), alias `vm<i:04>`, uuid `uuid5(NAMESPACE, "<node>/<i>")`, brand
cycling kvm, bhyve, joyent, joyent-minimal, lx, owner `owner_uuid(i % owners)` (the same
owners on every node), running when i is odd, stopped when even; every seventh HVM VM has
`internal_metadata.ostype = "windows"`.

Every state change (by an action or by the out-of-band helpers `create`, `destroy`, `crash`,
`set_state`, used by tests and demos) is pushed at once to every running watcher as an
`Observation` with the change time of this process's clock.
"""

from __future__ import annotations

import asyncio
import time
import uuid as uuidlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from vmd.config import MemorySettings
from vmd.model import JsonObject, NodeName, Observation, OutcomeKind, TaskOutcome, VmUuid

from . import classify, events, validate
from .commands import LISTING_FIELDS, PowerCall
from .watch import WatchSettings, WatchStats

NAMESPACE = uuidlib.UUID("5f0c1d7e-8d6b-4a53-9a3e-6d0f3c2b7a10")
BRANDS = ("kvm", "bhyve", "joyent", "joyent-minimal", "lx")
_READ_ONLY = frozenset({"uuid", "state", "zone_state", "brand", "last_modified"})


def owner_uuid(j: int) -> str:
    """The j-th owner of every memory node (so `[auth.owners]` can name them)."""
    return str(uuidlib.uuid5(NAMESPACE, f"owner/{j}"))


def seed(node: str, settings: MemorySettings, now: float) -> dict[VmUuid, JsonObject]:
    label = node.split(".")[0] or "node"
    vms: dict[VmUuid, JsonObject] = {}
    for i in range(1, settings.vms + 1):
        uuid = VmUuid(str(uuidlib.uuid5(NAMESPACE, f"{node}/{i}")))
        brand = BRANDS[(i - 1) % len(BRANDS)]
        meta: JsonObject = {}
        if brand in validate.HVM_BRANDS and i % 7 == 0:
            meta["ostype"] = "windows"
        state = "running" if i % 2 else "stopped"
        vms[uuid] = {
            "uuid": uuid,
            "state": state,
            "zone_state": "running" if state == "running" else "installed",
            "alias": f"vm{i:04d}",
            "hostname": f"{label}-vm{i:04d}.example.com",
            "brand": brand,
            "owner_uuid": owner_uuid(i % settings.owners),
            "internal_metadata": meta,
            "tags": {},
            "last_modified": now,
            "snapshots": [],
            "disks": [{"path": f"/dev/zvol/{uuid}-disk0", "size": 10240}]
            if brand in validate.HVM_BRANDS else [],
        }
    return vms


def _summary(vm: Mapping[str, Any]) -> JsonObject:
    return {k: vm[k] for k in LISTING_FIELDS if k in vm}


class MemoryNode:
    """A simulated compute node in this process (see the module docstring)."""

    def __init__(
        self,
        node: NodeName,
        settings: MemorySettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self.settings = settings or MemorySettings()
        self._clock = clock
        self._vms = seed(node, self.settings, clock())
        self._isos = set(self.settings.isos)
        self._watchers: set[asyncio.Queue[Observation]] = set()
        # Every power call, "<command> <uuid> [-F]": what tests and demos inspect.
        self.calls: deque[str] = deque(maxlen=100_000)

    def for_task(self, task_id: str) -> MemoryNode:
        """The same node: it keeps no per-invocation log a request id would go to."""
        return self

    # -- power actions -------------------------------------------------------------------

    async def start(self, call: PowerCall) -> TaskOutcome:
        uuid, run_timeout = call.uuid, call.run_timeout
        vm, name = self._find(uuid, call.hostname)
        self.calls.append(f"start {uuid}")
        if vm is None:
            return TaskOutcome(OutcomeKind.NOT_FOUND, 1,
                               f"Unable to start VM {name}: bad statusCode: 404")
        state = vm["state"]
        if state == "running":
            return TaskOutcome(OutcomeKind.NOOP, 0,
                               f"Unable to start VM {name}: VM {name} is already 'running'")
        if state != "stopped":
            return TaskOutcome(OutcomeKind.FAILURE, 1, f"Unable to start VM {name}: Cannot "
                               f'start vm from state "{state}", must be "stopped".')
        for iso in (call.cdimage, call.cdimage2):
            if iso is not None and iso not in self._isos:
                return TaskOutcome(OutcomeKind.FAILURE, 1,
                                   f"Unable to start VM {name}: Cannot find disk: /iso/{iso}")
        if not await self._take(self.settings.start_seconds, run_timeout, f"vmadm start {name}"):
            return classify.timed_out(f"vmadm start {name}", run_timeout or 0.0)
        self._set_state(VmUuid(uuid), "running")
        return TaskOutcome(OutcomeKind.SUCCESS, 0, f"Successfully started VM {name}")

    async def stop(self, call: PowerCall) -> TaskOutcome:
        uuid, force, run_timeout = call.uuid, call.force, call.run_timeout
        vm, name = self._find(uuid, call.hostname)
        self.calls.append(f"stop {uuid}" + (" -F" if force else ""))
        if vm is None:
            return TaskOutcome(OutcomeKind.NOT_FOUND, 1, f"VM {name} not found")
        state = vm["state"]
        if state not in ("running", "stopping"):
            text = f"VM {name} is already not 'running' (currently: {state})"
            if force:
                return TaskOutcome(OutcomeKind.NOOP, 1, f"first of 1 error: {text}")
            return TaskOutcome(OutcomeKind.NOOP, 0, text)
        vm_uuid = VmUuid(uuid)
        if not force and self.settings.stop_seconds > 0:
            self._set_state(vm_uuid, "stopping")
            try:
                done = await self._take(self.settings.stop_seconds, run_timeout, name)
            except asyncio.CancelledError:
                done = False
                raise
            finally:
                # A killed or timed-out graceful stop leaves a VM that nothing else stopped
                # (a forced stop beside it) running, as it was.
                current = self._vms.get(vm_uuid)
                if not done and current is not None and current["state"] == "stopping":
                    self._set_state(vm_uuid, "running")
            if not done:
                return classify.timed_out(f"vmadm stop {name}", run_timeout or 0.0)
        if vm_uuid in self._vms:
            self._set_state(vm_uuid, "stopped")
        return TaskOutcome(OutcomeKind.SUCCESS, 0, f"Successfully completed stop for VM {name}")

    async def reboot(
        self,
        uuid: str,
        *,
        hostname: str | None = None,
        force: bool = False,
        run_timeout: float | None = None,
    ) -> TaskOutcome:
        vm, name = self._find(uuid, hostname)
        self.calls.append(f"reboot {uuid}" + (" -F" if force else ""))
        if vm is None:
            return TaskOutcome(OutcomeKind.NOT_FOUND, 1, "bad statusCode: 404")
        if vm["state"] != "running":
            verb = "reset" if force else "reboot"
            return TaskOutcome(OutcomeKind.FAILURE, 1, f'Cannot {verb} vm from state '
                               f'"{vm["state"]}", must be "running"')
        seconds = 0.0 if force else self.settings.stop_seconds + self.settings.start_seconds
        if not await self._take(seconds, run_timeout, name):
            return classify.timed_out(f"vmadm reboot {name}", run_timeout or 0.0)
        return TaskOutcome(OutcomeKind.SUCCESS, 0, f"Successfully completed reboot for VM {name}")

    async def update(
        self,
        uuid: str,
        payload: Mapping[str, object],
        *,
        hostname: str | None = None,
        run_timeout: float | None = None,
    ) -> TaskOutcome:
        vm, name = self._find(uuid, hostname)
        body = validate.payload(dict(payload))
        self.calls.append(f"update {uuid}")
        if vm is None:
            return TaskOutcome(OutcomeKind.NOT_FOUND, 1, f"VM {name} not found")
        for key, value in body.items():
            if key in _READ_ONLY:
                continue
            if value is None:
                vm.pop(key, None)
            else:
                vm[key] = value
        vm["last_modified"] = self._clock()
        return TaskOutcome(OutcomeKind.SUCCESS, 0, f"Successfully updated VM {name}")

    async def current(self, uuid: str, *, hostname: str | None = None) -> TaskOutcome:
        vm, name = self._find(uuid, hostname)
        if vm is None:
            return TaskOutcome(OutcomeKind.NOT_FOUND, 1, f"VM {name} not found", state=None)
        state = str(vm["state"])
        return TaskOutcome(OutcomeKind.SUCCESS, 0, f"VM {name} is {state}", state=state)

    # -- queries -------------------------------------------------------------------------

    async def get(self, uuid: str) -> JsonObject | None:
        vm = self._vms.get(validate.uuid(uuid))
        return None if vm is None else dict(vm)

    async def listing(self) -> dict[VmUuid, JsonObject]:
        return {uuid: _summary(vm) for uuid, vm in self._vms.items()}

    async def isos(self) -> frozenset[str]:
        return frozenset(self._isos)

    def watch(
        self,
        settings: WatchSettings | None = None,
        *,
        baseline: Mapping[VmUuid, JsonObject] | None = None,
    ) -> MemoryWatcher:
        return MemoryWatcher(self, baseline)

    # -- the world around the node (tests, demos) ------------------------------------------

    def create(self, *, hostname: str, brand: str = "kvm", state: str = "stopped",
               owner: str | None = None, alias: str = "") -> VmUuid:
        uuid = VmUuid(str(uuidlib.uuid4()))
        self._vms[uuid] = {
            "uuid": uuid, "state": state,
            "zone_state": "running" if state == "running" else "installed",
            "alias": alias, "hostname": hostname, "brand": brand,
            "owner_uuid": owner or owner_uuid(0), "internal_metadata": {}, "tags": {},
            "last_modified": self._clock(), "snapshots": [], "disks": [],
        }
        self._emit(uuid)
        return uuid

    def destroy(self, uuid: str) -> None:
        if self._vms.pop(VmUuid(uuid), None) is not None:
            self._emit(VmUuid(uuid))

    def crash(self, uuid: str) -> None:
        """A running VM dies (the guest crashed, or someone halted it on the node)."""
        self.set_state(uuid, "stopped")

    def set_state(self, uuid: str, state: str) -> None:
        if VmUuid(uuid) in self._vms:
            self._set_state(VmUuid(uuid), state)

    def add_iso(self, name: str) -> None:
        self._isos.add(validate.iso_name(name))

    # -- internals -------------------------------------------------------------------------

    def _find(self, uuid: str, hostname: str | None) -> tuple[JsonObject | None, str]:
        vm = self._vms.get(validate.uuid(uuid))
        name = hostname if hostname is not None else uuid
        return vm, validate.hostname(name) if hostname is not None else name

    async def _take(self, seconds: float, limit: float | None, _what: str) -> bool:
        """Simulated work; False when `limit` (the run timeout) ran out first."""
        if seconds <= 0:
            return True
        if limit is not None and limit < seconds:
            await asyncio.sleep(limit)
            return False
        await asyncio.sleep(seconds)
        return True

    def _set_state(self, uuid: VmUuid, state: str) -> None:
        vm = self._vms[uuid]
        if vm["state"] == state:
            return
        vm["state"] = state
        vm["zone_state"] = {"running": "running", "stopping": "running"}.get(state, "installed")
        vm["last_modified"] = self._clock()
        self._emit(uuid)

    def _emit(self, uuid: VmUuid) -> None:
        vm = self._vms.get(uuid)
        summary = None if vm is None else _summary(vm)
        obs = Observation(uuid, self.node, events.state_of(summary), self._clock(), summary)
        for queue in self._watchers:
            queue.put_nowait(obs)

    def _subscribe(self) -> asyncio.Queue[Observation]:
        queue: asyncio.Queue[Observation] = asyncio.Queue()
        self._watchers.add(queue)
        return queue

    def _unsubscribe(self, queue: asyncio.Queue[Observation]) -> None:
        self._watchers.discard(queue)


class MemoryWatcher:
    """The memory node's observation stream; with a `baseline`, first what changed since."""

    def __init__(self, node: MemoryNode, baseline: Mapping[VmUuid, JsonObject] | None) -> None:
        self.node = node
        self.baseline = baseline
        self.stats = WatchStats()

    def __aiter__(self) -> AsyncIterator[Observation]:
        return self._run()

    async def _run(self) -> AsyncIterator[Observation]:
        queue = self.node._subscribe()
        self.stats.stream_starts += 1
        try:
            if self.baseline is not None:
                now = self.node._clock()
                current = await self.node.listing()
                for uuid, vm in events.diff(self.baseline, current):
                    self.stats.observations += 1
                    yield Observation(uuid, self.node.node, events.state_of(vm), now, vm)
            while True:
                obs = await queue.get()
                self.stats.events += 1
                self.stats.observations += 1
                yield obs
        finally:
            self.node._unsubscribe(queue)
