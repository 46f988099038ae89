"""Making an ISO image visible to a VM's zone before `vmadm start` boots from it.

On SmartOS the hypervisor (qemu for KVM, bhyve) runs inside the VM's zone, and vmadm checks
a KVM start's `cdrom=/iso/<name>` path under the zone's root, as the global zone sees it
(docs/driver.md, vmadm fact 3). Danube Cloud therefore does two things before such a start,
and so does vmd, for `cdimage` and `cdimage2` of a kvm or bhyve VM:

1. the node's ISO directory is lofs-mounted read-only at `/iso` in the zone: a zonecfg `fs`
   resource (`dir=/iso`, `special=<iso_dir>`, `type=lofs`, options `ro,nodevices`), mounted
   by the zone's next boot;
2. a placeholder file `<zonepath>/root/iso/<name>` exists, so vmadm's path check passes
   (once the zone runs, the mount covers it and the guest reads the real image).

Idempotent: an existing `fs` resource at `/iso` and existing placeholders are left alone, so a
second start from the same ISO only reads. The commands, each an argv list run through the
node's runner (so over SSH each argument is quoted), with the task's `REQ_ID`:

    ls -1 -p -- <iso_dir>                         the images must be on the node
    zonecfg -z <uuid> info fs                     is there an fs resource at /iso?
    zonecfg -z <uuid> 'add fs; set dir=/iso; set special=<iso_dir>; set type=lofs;
                       add options [ro,nodevices]; end'          (only if not)
    ls -1 -p -- <zonepath>/root/iso               which placeholders exist?
    mkdir -p -- <zonepath>/root/iso               (only if that directory is missing)
    touch -- <zonepath>/root/iso/<name> ...       (only the missing ones)

zonecfg's subcommands are one argument built from validated values only (the uuid, the ISO
directory as a plain absolute path); no shell is involved locally. Any failure is a FAILURE
outcome carrying the node's message; nothing is undone (an added mount or a placeholder is
harmless and is what the next start needs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from vmd.model import OutcomeKind, TaskOutcome
from vmd.obs.logging import get_logger

from . import classify, commands, validate
from .classify import TIMEOUT_RC
from .errors import RunnerError, ValidationError
from .runner import RunResult

log = get_logger(__name__)

Run = Callable[[Sequence[str], float], Awaitable[RunResult]]


class PrepFailed(Exception):
    """A preparation step failed; `outcome` is the task's FAILURE."""

    def __init__(self, outcome: TaskOutcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


class IsoPrep:
    """One preparation (see the module docstring); `await prep.run()` -> None or FAILURE."""

    def __init__(
        self,
        run: Run,
        *,
        zonecfg: Sequence[str],
        uuid: str,
        zonepath: object,
        iso_dir: str,
        names: Sequence[str],
        deadline: float,
        query_timeout: float,
    ) -> None:
        self._run = run
        self.zonecfg = tuple(zonecfg)
        self.uuid = validate.uuid(uuid)
        self.zonepath = zonepath
        self.iso_dir = iso_dir
        self.names = tuple(dict.fromkeys(validate.iso_name(n) for n in names))
        self.deadline = deadline
        self.query_timeout = query_timeout

    async def run(self) -> TaskOutcome | None:
        try:
            try:
                iso_dir = validate.node_path(self.iso_dir, "ISO directory")
                root = validate.node_path(self.zonepath, "zonepath") + "/root" + commands.ISO_MOUNT
            except ValidationError as exc:
                raise PrepFailed(TaskOutcome(OutcomeKind.FAILURE, 1, f"cannot prepare the "
                                             f"ISO: {exc}")) from None
            await self._check_images(iso_dir)
            await self._mount(iso_dir)
            await self._placeholders(root)
        except PrepFailed as exc:
            return exc.outcome
        return None

    async def _step(self, what: str, argv: Sequence[str], *, check: bool = True) -> RunResult:
        left = self.deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise PrepFailed(TaskOutcome(OutcomeKind.FAILURE, TIMEOUT_RC,
                                         f"preparing the ISO: {what} not run: no time left"))
        limit = min(self.query_timeout, left)
        try:
            result = await self._run(argv, limit)
        except RunnerError as exc:
            raise PrepFailed(classify.not_run(f"preparing the ISO: {what}", exc.returncode,
                                              str(exc))) from None
        if result.timed_out:
            raise PrepFailed(classify.timed_out(f"preparing the ISO: {what}", limit,
                                                result.stderr))
        if check and result.returncode != 0:
            message = classify.message_line(result.stderr) or "no message"
            raise PrepFailed(TaskOutcome(
                OutcomeKind.FAILURE, result.returncode,
                f"preparing the ISO: {what} failed (exit {result.returncode}): {message}"))
        return result

    async def _check_images(self, iso_dir: str) -> None:
        listed = await self._step(f"ls {iso_dir}", commands.ls_argv(iso_dir))
        present = set(listed.stdout.splitlines())
        for name in self.names:
            if name not in present:
                raise PrepFailed(TaskOutcome(OutcomeKind.FAILURE, 1, f"ISO image {name} is "
                                             f"not available on the node ({iso_dir})"))

    async def _mount(self, iso_dir: str) -> None:
        info = await self._step(f"zonecfg -z {self.uuid} info fs",
                                [*self.zonecfg, *commands.zonecfg_info_fs_args(self.uuid)])
        special = commands.fs_dirs(info.stdout).get(commands.ISO_MOUNT)
        if special is not None:
            if special != iso_dir:  # left alone, as Danube Cloud would: but worth a look
                log.warning("the zone's /iso is not the ISO directory: left alone",
                            vm=self.uuid, special=special, iso_dir=iso_dir)
            return
        await self._step(f"zonecfg -z {self.uuid} add fs",
                         [*self.zonecfg, *commands.zonecfg_add_iso_args(self.uuid, iso_dir)])

    async def _placeholders(self, root: str) -> None:
        listed = await self._step(f"ls {root}", commands.ls_argv(root), check=False)
        if listed.returncode == 0:
            present = set(listed.stdout.splitlines())
        else:  # no such directory yet (or unreadable: mkdir says which)
            present = set()
            await self._step(f"mkdir {root}", commands.mkdir_argv(root))
        missing = [f"{root}/{n}" for n in self.names if n not in present]
        if missing:
            await self._step(f"touch {' '.join(missing)}", commands.touch_argv(missing))
