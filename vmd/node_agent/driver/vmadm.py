"""The vmadm driver: power actions, queries and the node watch, over any `Runner`.

Power actions (`start`, `stop`, `reboot`, `update`) always return a `TaskOutcome`, never
raise for something that happened on the node: a vmadm failure, a command killed at its
time limit, or a node that cannot be reached are all FAILURE outcomes (data), so a task
always ends with a result. Only invalid arguments (`ValidationError`, raised before anything
runs) and a rejected SSH host key or unusable SSH settings escape as exceptions.

Queries (`get`, `state`, `listing`, `isos`) return data or raise `VmadmError` (vmadm failed
or printed garbage) / `RunnerError` (the command could not be run).

Every command carries `REQ_ID` (vmadm stamps it into its per-invocation log on the node):
the task's id in the copy `for_task(task_id)` returns, else a fresh `vmd-sync-<hex>` per
call (the agent's own listings, events streams, ISO listings and lookups).

A start from an ISO on kvm or bhyve first prepares the zone (`isoprep`: the lofs mount of the
ISO directory at /iso and the placeholder files vmadm's path check needs).

`state()` uses `vmadm get <uuid>` rather than `vmadm list -p -H -o state uuid=<uuid>`:
an absent VM is then an explicit `No such zone configured` (exit 1) instead of an empty
output that a broken filter would produce as well, `get` looks up one VM by key instead of
filtering a listing, and the full object it returns also serves `current()`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
from collections.abc import Mapping, Sequence

from vmd.model import JsonObject, NodeName, OutcomeKind, TaskOutcome, VmUuid
from vmd.obs.logging import get_logger

from . import classify, commands, events, nodejson, validate
from .commands import PowerCall, Timeouts
from .errors import RunnerError, VmadmError
from .isoprep import IsoPrep
from .runner import Runner, RunResult, Stream
from .watch import NodeWatcher, WatchSettings

log = get_logger(__name__)

SYNC_PREFIX = "vmd-sync-"


def sync_id() -> str:
    """A request id for one of the agent's own calls (not a task's)."""
    return SYNC_PREFIX + os.urandom(6).hex()


class Vmadm:
    """vmadm on one node, reached through `runner` (local or SSH)."""

    def __init__(
        self,
        runner: Runner,
        *,
        node: NodeName,
        vmadm: Sequence[str] = ("/usr/sbin/vmadm",),
        iso_dir: str = "/iso",
        timeouts: Timeouts | None = None,
        zonecfg: Sequence[str] = ("/usr/sbin/zonecfg",),
    ) -> None:
        if not vmadm or not zonecfg:
            raise ValueError("the vmadm or zonecfg command is empty")
        self.runner = runner
        self.node = node
        self.vmadm = tuple(vmadm)
        self.zonecfg = tuple(zonecfg)
        self.iso_dir = commands.check_iso_dir(iso_dir)
        self.timeouts = timeouts or Timeouts()
        self.req_id: str | None = None  # None: a fresh sync id per call

    def for_task(self, task_id: str) -> Vmadm:
        """This driver with every command carrying `REQ_ID=<task_id>` (same runner)."""
        bound = copy.copy(self)
        bound.req_id = validate.req_id(task_id)
        return bound

    def _env(self) -> dict[str, str]:
        return {"REQ_ID": self.req_id or sync_id()}

    async def _run(
        self, argv: Sequence[str], timeout: float, stdin: bytes | None = None
    ) -> RunResult:
        return await self.runner.run(argv, stdin=stdin, timeout=timeout, env=self._env())

    # -- power actions -------------------------------------------------------------------

    async def start(self, call: PowerCall) -> TaskOutcome:
        """`vmadm start`, optionally booting from the node's ISO image(s).

        KVM: start options (`order=`, `cdrom=`). bhyve: the ISO is attached through
        `bhyve_extra_opts` for the duration of the start and the previous value is
        restored afterwards, whatever the start's outcome (as Danube Cloud does; so
        `cdimage_once` has no effect on bhyve: the CD is there for this boot only).
        OS zones: an ISO request is ignored (vmadm ignores start options for zones).
        kvm and bhyve: the zone is prepared first (`isoprep`); a failure there is the
        start's FAILURE and vmadm start does not run.
        """
        uuid, brand, cdimage, cdimage2 = call.uuid, call.brand, call.cdimage, call.cdimage2
        args = commands.start_args(
            uuid, brand=brand, cdimage=cdimage, cdimage_once=call.cdimage_once, cdimage2=cdimage2
        )
        name = _hostname(call.hostname)
        limit = _limit(call.run_timeout, self.timeouts.start)
        vm = VmUuid(uuid)
        if cdimage is not None and brand in validate.HVM_BRANDS:
            isos = [cdimage] if cdimage2 is None else [cdimage, cdimage2]
            return await self._start_iso(vm, brand, name, args, isos, limit)
        if cdimage is not None:
            log.info("start: ISO ignored for an OS zone", vm=uuid, cdimage=cdimage, brand=brand)
        return await self._action(args, uuid=vm, hostname=name, timeout=limit)

    async def _start_iso(
        self, uuid: VmUuid, brand: str, name: str | None, args: list[str], isos: list[str],
        limit: float,
    ) -> TaskOutcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        try:
            vm = await self.get(uuid)
        except (VmadmError, RunnerError) as exc:
            return classify.not_run(f"vmadm get {name or uuid}", _rc(exc), str(exc))
        if vm is None:
            return TaskOutcome(OutcomeKind.NOT_FOUND, 1, f"VM {name or uuid} not found")
        # A running VM: nothing to prepare (its zone is up); vmadm answers "already running".
        if events.state_of(vm) != "running":
            failed = await IsoPrep(
                self._run, zonecfg=self.zonecfg, uuid=uuid, zonepath=vm.get("zonepath"),
                iso_dir=self.iso_dir, names=isos, deadline=deadline,
                query_timeout=self.timeouts.query).run()
            if failed is not None:
                message = classify.humanize(failed.message, uuid, name)
                log.info("start: ISO preparation failed", vm=uuid, error=message)
                return TaskOutcome(failed.kind, failed.returncode, message)
        left = deadline - loop.time()
        if left <= 0:
            return classify.timed_out(f"vmadm start {name or uuid}", limit)
        if brand == "bhyve":
            return await self._start_bhyve_iso(vm, uuid, name, isos, left)
        return await self._action(args, uuid=uuid, hostname=name, timeout=left)

    async def _start_bhyve_iso(
        self, vm: JsonObject, uuid: VmUuid, name: str | None, isos: list[str], limit: float
    ) -> TaskOutcome:
        cdimage, cdimage2 = isos[0], (isos[1] if len(isos) > 1 else None)
        current = vm.get("bhyve_extra_opts")
        current = current if isinstance(current, str) else None
        opts = commands.bhyve_extra_opts(current, cdimage, cdimage2)
        attached = await self.update(uuid, {"bhyve_extra_opts": opts}, hostname=name)
        if attached.kind is not OutcomeKind.SUCCESS:
            return attached
        try:
            return await self._action(
                commands.start_args(uuid, brand="bhyve"), uuid=uuid, hostname=name, timeout=limit
            )
        finally:
            # Shielded: even a cancelled start must not leave the ISO configured.
            restored = await asyncio.shield(
                self.update(uuid, {"bhyve_extra_opts": current}, hostname=name)
            )
            if restored.kind is not OutcomeKind.SUCCESS:
                log.warning("start: restoring bhyve_extra_opts failed", vm=uuid,
                            error=restored.message)

    async def stop(self, call: PowerCall) -> TaskOutcome:
        """`vmadm stop`: `-F` when forced; `-t <timeout>` for KVM/bhyve when timeout > 0."""
        args = commands.stop_args(call.uuid, brand=call.brand, force=call.force,
                                  timeout=call.timeout)
        default = self.timeouts.stop(call.brand, force=call.force, timeout=call.timeout)
        return await self._action(
            args,
            uuid=VmUuid(call.uuid),
            hostname=_hostname(call.hostname),
            timeout=_limit(call.run_timeout, default),
        )

    async def reboot(
        self,
        uuid: str,
        *,
        hostname: str | None = None,
        force: bool = False,
        run_timeout: float | None = None,
    ) -> TaskOutcome:
        """`vmadm reboot` (`-F` when forced). Rebooting a stopped VM is a FAILURE (exit 1)."""
        args = commands.reboot_args(uuid, force=force)
        default = self.timeouts.force if force else self.timeouts.reboot
        return await self._action(
            args,
            uuid=VmUuid(uuid),
            hostname=_hostname(hostname),
            timeout=_limit(run_timeout, default),
        )

    async def update(
        self,
        uuid: str,
        payload: Mapping[str, object],
        *,
        hostname: str | None = None,
        run_timeout: float | None = None,
    ) -> TaskOutcome:
        """`vmadm update <uuid>` with the payload as JSON on stdin."""
        args = commands.update_args(uuid)
        body = json.dumps(validate.payload(dict(payload)), allow_nan=False).encode()
        return await self._action(
            args,
            uuid=VmUuid(uuid),
            hostname=_hostname(hostname),
            timeout=_limit(run_timeout, self.timeouts.update),
            stdin=body,
        )

    async def _action(
        self,
        args: list[str],
        *,
        uuid: VmUuid,
        hostname: str | None,
        timeout: float,
        stdin: bytes | None = None,
    ) -> TaskOutcome:
        what = "vmadm " + " ".join(args[:2])
        try:
            result = await self._run([*self.vmadm, *args], timeout, stdin)
        except RunnerError as exc:
            outcome = classify.not_run(what, exc.returncode, str(exc))
        else:
            if result.timed_out:
                outcome = classify.timed_out(what, timeout, result.stderr)
            else:
                outcome = classify.classify(result.returncode, result.stderr)
        message = classify.humanize(outcome.message, uuid, hostname)
        log.info("vmadm ran", command=what, outcome=outcome.kind.value,
                 returncode=outcome.returncode, message=message)
        return TaskOutcome(outcome.kind, outcome.returncode, message)

    # -- queries -------------------------------------------------------------------------

    async def _query(self, argv: list[str]) -> RunResult:
        timeout = self.timeouts.query
        result = await self._run(argv, timeout)
        if result.timed_out:
            raise VmadmError(f"{' '.join(argv[-2:])}: no answer within {timeout:g} s (killed)")
        return result

    async def get(self, uuid: str) -> JsonObject | None:
        """The full VM object (`vmadm get`), or None when the VM does not exist."""
        vm = validate.uuid(uuid)
        result = await self._query([*self.vmadm, *commands.get_args(vm)])
        if result.returncode != 0:
            message = classify.message_line(result.stderr)
            if classify.kind_of(result.returncode, message) is OutcomeKind.NOT_FOUND:
                return None
            raise VmadmError(f"vmadm get {vm}: {message} (exit {result.returncode})")
        try:
            obj = nodejson.loads(result.stdout)
        except ValueError:
            raise VmadmError(f"vmadm get {vm}: output is not JSON") from None
        if not isinstance(obj, dict):
            raise VmadmError(f"vmadm get {vm}: output is not a JSON object")
        return obj

    async def state(self, uuid: str) -> str | None:
        """The node-side state string of one VM, or None when it is absent (`vmadm get`)."""
        vm = await self.get(uuid)
        if vm is None:
            return None
        state = events.state_of(vm)
        if state is None:
            raise VmadmError(f"vmadm get {uuid}: no state in the VM object")
        return state

    async def current(self, uuid: str, *, hostname: str | None = None) -> TaskOutcome:
        """A `current` task: the VM's node state in `TaskOutcome.state` (never raises
        for node trouble: FAILURE outcome instead)."""
        name = _hostname(hostname) or validate.uuid(uuid)
        try:
            state = await self.state(uuid)
        except (VmadmError, RunnerError) as exc:
            message = classify.humanize(str(exc), uuid, name)
            return TaskOutcome(OutcomeKind.FAILURE, _rc(exc), message)
        if state is None:
            return TaskOutcome(OutcomeKind.NOT_FOUND, 1, f"VM {name} not found", state=None)
        return TaskOutcome(OutcomeKind.SUCCESS, 0, f"VM {name} is {state}", state=state)

    async def listing(self) -> dict[VmUuid, JsonObject]:
        """Every VM of the node: uuid -> the fields of `commands.LISTING_FIELDS`."""
        argv = [*self.vmadm, *commands.lookup_args()]
        result = await self._query(argv)
        if result.returncode != 0:
            message = classify.message_line(result.stderr)
            raise VmadmError(f"vmadm lookup: {message} (exit {result.returncode})")
        try:
            return events.snapshot(nodejson.loads(result.stdout))
        except ValueError as exc:  # json errors and BadEvent
            raise VmadmError(f"vmadm lookup: unexpected output: {exc}") from None

    async def isos(self) -> frozenset[str]:
        """The ISO image names in the node's ISO directory (plain, valid names only)."""
        result = await self._query(commands.ls_argv(self.iso_dir))
        if result.returncode != 0:
            message = classify.message_line(result.stderr)
            raise VmadmError(f"listing {self.iso_dir}: {message} (exit {result.returncode})")
        names: set[str] = set()
        for line in result.stdout.splitlines():
            if not line or line.endswith("/"):
                continue
            try:
                names.add(validate.iso_name(line))
            except ValueError:
                log.debug("ISO directory: skipping an unusable name", iso_dir=self.iso_dir,
                          name=line)
        return frozenset(names)

    # -- watching ------------------------------------------------------------------------

    async def events_stream(self) -> Stream:
        """A running `vmadm events -j -r` (used by the watcher)."""
        return await self.runner.spawn([*self.vmadm, *commands.events_args()], env=self._env())

    def watch(
        self,
        settings: WatchSettings | None = None,
        *,
        baseline: Mapping[VmUuid, JsonObject] | None = None,
    ) -> NodeWatcher:
        """The node watcher: `async for observation in vmadm.watch(): ...`.

        See `vmd.node_agent.driver.watch` for exactly what it yields.
        """
        return NodeWatcher(self, settings or WatchSettings(), baseline=baseline)


def _hostname(hostname: str | None) -> str | None:
    return None if hostname is None else validate.hostname(hostname)


def _limit(run_timeout: float | None, default: float) -> float:
    return default if run_timeout is None else validate.run_timeout(run_timeout)


def _rc(exc: Exception) -> int:
    return exc.returncode if isinstance(exc, RunnerError) else 1
