"""One task's vmadm call(s): its parameters, the update around the power action, its deadline.

The daemon puts in `AgentTask.params` what the agent needs (vmd/fsm/power.py `_task_params`):
`hostname`, `update` (true only when a pending definition is to be applied), `definition`
(the pending vmadm update properties, with `update`), `cdimage`, `cdimage_once`, `cdimage2`
(start), `force`, `timeout` (stop, reboot) and `freeze` (stop: the daemon's business, unused
here). An optional `brand` is used when present; otherwise the brand comes from what the
agent last listed on the node, else from `vmadm get` (a VM absent there is NOT_FOUND).

docs/fsm.md §6, with `update` and a definition: `vmadm update` (JSON on stdin) runs before
a start, after a stop, and between the stop and the start of a reboot (a reboot with update
is stop, update, start, not `vmadm reboot`). After a successful update the VM is re-read
(`vmadm get`) and returned as `TaskOutcome.definition`, also when the power action itself
then fails. If the update fails: a start does not run (the update's outcome is the
result); after a stop the result is a FAILURE naming both; in a reboot the VM is started
anyway with its old definition (a failed update must not leave it down) and the result is
a FAILURE naming the update.

Every call goes to `backend.for_task(task_id)`, so vmadm's `REQ_ID` on the node is the task
id (docs/driver.md, "Tracing a task on the node").

Deadline: every vmadm call gets `run_timeout` = the time left to the task's deadline (the
driver kills it then), and no call starts once the deadline has passed (FAILURE, 124).
Invalid parameters are a FAILURE with returncode 2 and run nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from vmd.bus import AgentTask
from vmd.model import Action, JsonObject, OutcomeKind, TaskOutcome, VmUuid
from vmd.obs.logging import get_logger

from .driver import validate
from .driver.backend import Backend
from .driver.classify import TIMEOUT_RC
from .driver.commands import PowerCall
from .driver.errors import RunnerError, ValidationError, VmadmError

log = get_logger(__name__)

INVALID_RC = 2
S, F, NOOP = OutcomeKind.SUCCESS, OutcomeKind.FAILURE, OutcomeKind.NOOP

BrandOf = Callable[[VmUuid], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Params:
    force: bool = False
    timeout: int | None = None
    cdimage: str | None = None
    cdimage_once: bool = True
    cdimage2: str | None = None
    definition: JsonObject | None = None  # set only when the update is to run
    brand: str | None = None


def _opt(params: JsonObject, key: str, kind: type, default: Any) -> Any:
    value = params.get(key, default)
    if value is None or (isinstance(value, kind) and (kind is bool or not isinstance(value, bool))):
        return value
    raise ValidationError(f"task parameter {key!r} must be {kind.__name__} (got {value!r:.40})")


def parse_params(params: JsonObject) -> Params:
    """The task's parameters, type-checked (values are checked by the driver)."""
    update = bool(_opt(params, "update", bool, False))
    definition = _opt(params, "definition", dict, None)
    return Params(
        force=bool(_opt(params, "force", bool, False)),
        timeout=_opt(params, "timeout", int, None),
        cdimage=_opt(params, "cdimage", str, None),
        cdimage_once=_opt(params, "cdimage_once", bool, True) is not False,
        cdimage2=_opt(params, "cdimage2", str, None),
        definition=definition if update and definition else None,
        brand=_opt(params, "brand", str, None),
    )


class Execution:
    """Runs one task against `backend` (see the module docstring)."""

    def __init__(
        self, backend: Backend, task: AgentTask, *, brand_of: BrandOf,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.task = task
        self.brand_of = brand_of
        self.clock = clock
        self.name = task.hostname

    async def run(self) -> TaskOutcome:
        try:
            validate.hostname(self.task.hostname)
            validate.uuid(self.task.uuid)
            self.backend = self.backend.for_task(self.task.task_id)
            p = parse_params(self.task.params)
            match self.task.action:
                case Action.CURRENT:
                    return await self._current()
                case Action.START:
                    return await self._start(p)
                case Action.STOP:
                    return await self._stop(p)
                case Action.REBOOT:
                    return await self._reboot(p)
        except ValidationError as exc:
            return TaskOutcome(F, INVALID_RC, f"invalid task: {exc}")
        raise AssertionError(self.task.action)

    # -- the deadline ----------------------------------------------------------------------

    def _left(self) -> float | None:
        left = self.task.deadline - self.clock()
        return left if left > 0 else None

    def _late(self, what: str) -> TaskOutcome:
        return TaskOutcome(F, TIMEOUT_RC, f"vmadm {what} {self.name} not run: the task's "
                           "deadline has passed")

    # -- actions ---------------------------------------------------------------------------

    async def _current(self) -> TaskOutcome:
        left = self._left()
        if left is None:
            return self._late("get")
        # The state is true at some moment after this one: the daemon then orders this
        # answer correctly against events of the node (docs/fsm.md §5).
        asked = self.clock()
        try:
            async with asyncio.timeout(left):
                out = await self.backend.current(self.task.uuid, hostname=self.name)
        except TimeoutError:
            return TaskOutcome(F, TIMEOUT_RC, f"vmadm get {self.name} did not answer before "
                               "the task's deadline")
        if out.kind in (S, OutcomeKind.NOT_FOUND):
            return dataclasses.replace(out, change_time=asked)
        return out

    async def _brand(self, p: Params) -> str | TaskOutcome:
        if p.brand is not None:
            return validate.brand(p.brand)
        try:
            brand = await self.brand_of(self.task.uuid)
        except (VmadmError, RunnerError) as exc:
            rc = exc.returncode if isinstance(exc, RunnerError) else 1
            return TaskOutcome(F, rc, f"vmadm get {self.name}: {exc}")
        if brand is None:
            return TaskOutcome(OutcomeKind.NOT_FOUND, 1, f"VM {self.name} not found")
        return brand

    async def _update(self, p: Params) -> tuple[TaskOutcome, JsonObject | None]:
        assert p.definition is not None
        left = self._left()
        if left is None:
            return self._late("update"), None
        out = await self.backend.update(self.task.uuid, p.definition, hostname=self.name,
                                        run_timeout=left)
        if out.kind is not S:
            return out, None
        try:
            return out, await self.backend.get(self.task.uuid)
        except (VmadmError, RunnerError) as exc:
            log.warning("update applied, re-reading the VM failed", error=str(exc))
            return out, None

    async def _start(self, p: Params) -> TaskOutcome:
        brand = await self._brand(p)
        if isinstance(brand, TaskOutcome):
            return brand
        definition = None
        if p.definition is not None:
            updated, definition = await self._update(p)
            if updated.kind is not S:
                return updated
        return dataclasses.replace(await self._power_start(p, brand), definition=definition)

    async def _power_start(self, p: Params, brand: str) -> TaskOutcome:
        left = self._left()
        if left is None:
            return self._late("start")
        return await self.backend.start(PowerCall(
            self.task.uuid, brand, hostname=self.name, run_timeout=left, cdimage=p.cdimage,
            cdimage_once=p.cdimage_once, cdimage2=p.cdimage2))

    async def _power_stop(self, p: Params, brand: str) -> TaskOutcome:
        left = self._left()
        if left is None:
            return self._late("stop")
        return await self.backend.stop(PowerCall(
            self.task.uuid, brand, hostname=self.name, run_timeout=left, force=p.force,
            timeout=p.timeout))

    async def _stop(self, p: Params) -> TaskOutcome:
        brand = await self._brand(p)
        if isinstance(brand, TaskOutcome):
            return brand
        stopped = await self._power_stop(p, brand)
        # NOOP: the VM was not running, so it is stopped: the update applies as well.
        if p.definition is None or stopped.kind not in (S, NOOP):
            return stopped
        updated, definition = await self._update(p)
        if updated.kind is not S:
            return TaskOutcome(F, updated.returncode,
                               f"{stopped.message}; then the update failed: {updated.message}")
        return dataclasses.replace(stopped, definition=definition)

    async def _reboot(self, p: Params) -> TaskOutcome:
        if p.definition is None:
            left = self._left()
            if left is None:
                return self._late("reboot")
            return await self.backend.reboot(self.task.uuid, hostname=self.name, force=p.force,
                                             run_timeout=left)
        brand = await self._brand(p)
        if isinstance(brand, TaskOutcome):
            return brand
        stopped = await self._power_stop(p, brand)
        if stopped.kind not in (S, NOOP):
            return stopped
        updated, definition = await self._update(p)
        started = await self._power_start(Params(), brand)
        if updated.kind is not S:
            return TaskOutcome(F, updated.returncode, f"update failed: {updated.message}; "
                               f"{started.message}", definition=definition)
        if started.kind is not S:
            return dataclasses.replace(started, definition=definition)
        return TaskOutcome(S, 0, f"Successfully completed reboot for VM {self.name}",
                           definition=definition)
