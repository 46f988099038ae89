"""Counting every vmadm call the agent makes, without touching the driver.

`Metered` wraps any `Backend` and records, per call, `vmd_vmadm_calls_total{command,
outcome}`, `vmd_vmadm_duration_seconds{command}` and `vmd_vmadm_in_flight`
(docs/operations.md). The outcome of a power action is its classification (success, noop,
not_found, failure), `timeout` when the driver killed it at its time limit (returncode 124)
and `error` when it could not run at all (127: no executable; 255: node unreachable or the
connection lost). A query counts `success`, `not_found` (`get` of an absent VM), `failure`
(vmadm failed or printed garbage) or `error` (could not run). A call cancelled half-way
(preempted, shutdown) counts `error`. `current` is a `get`, `listing` a `lookup`; the ISO
directory listing is not a vmadm call and is not counted.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from vmd.model import JsonObject, NodeName, OutcomeKind, TaskOutcome, VmUuid
from vmd.obs.metrics import AgentMetrics

from .backend import Backend, Watcher
from .classify import TIMEOUT_RC
from .commands import PowerCall
from .errors import RunnerError
from .watch import WatchSettings

T = TypeVar("T")
_NOT_RUN = frozenset({127, 255})


def outcome_label(outcome: TaskOutcome) -> str:
    if outcome.kind is OutcomeKind.FAILURE:
        if outcome.returncode == TIMEOUT_RC:
            return "timeout"
        if outcome.returncode in _NOT_RUN:
            return "error"
    return outcome.kind.value


class Metered:
    """A `Backend` that counts the calls it passes on (see the module docstring)."""

    def __init__(self, backend: Backend, metrics: AgentMetrics) -> None:
        self.backend = backend
        self.metrics = metrics
        self.node: NodeName = backend.node

    def for_task(self, task_id: str) -> Metered:
        return Metered(self.backend.for_task(task_id), self.metrics)

    async def _timed(
        self, command: str, call: Awaitable[T], label: Callable[[T], str]
    ) -> T:
        m = self.metrics
        m.vmadm_in_flight.inc()
        began = time.monotonic()
        outcome = "error"
        try:
            result = await call
            outcome = label(result)
            return result
        except RunnerError:
            outcome = "error"
            raise
        except Exception:
            outcome = "failure"
            raise
        finally:
            m.vmadm_in_flight.dec()
            m.vmadm_call(command, outcome, time.monotonic() - began)

    async def start(self, call: PowerCall) -> TaskOutcome:
        return await self._timed("start", self.backend.start(call), outcome_label)

    async def stop(self, call: PowerCall) -> TaskOutcome:
        return await self._timed("stop", self.backend.stop(call), outcome_label)

    async def reboot(
        self,
        uuid: str,
        *,
        hostname: str | None = None,
        force: bool = False,
        run_timeout: float | None = None,
    ) -> TaskOutcome:
        return await self._timed("reboot", self.backend.reboot(
            uuid, hostname=hostname, force=force, run_timeout=run_timeout), outcome_label)

    async def update(
        self,
        uuid: str,
        payload: Mapping[str, object],
        *,
        hostname: str | None = None,
        run_timeout: float | None = None,
    ) -> TaskOutcome:
        return await self._timed("update", self.backend.update(
            uuid, payload, hostname=hostname, run_timeout=run_timeout), outcome_label)

    async def current(self, uuid: str, *, hostname: str | None = None) -> TaskOutcome:
        return await self._timed(
            "get", self.backend.current(uuid, hostname=hostname), outcome_label)

    async def get(self, uuid: str) -> JsonObject | None:
        return await self._timed(
            "get", self.backend.get(uuid), lambda vm: "not_found" if vm is None else "success")

    async def listing(self) -> dict[VmUuid, JsonObject]:
        return await self._timed("lookup", self.backend.listing(), lambda _: "success")

    async def isos(self) -> frozenset[str]:
        return await self.backend.isos()

    def watch(
        self,
        settings: WatchSettings | None = None,
        *,
        baseline: Mapping[VmUuid, JsonObject] | None = None,
    ) -> Watcher:
        return self.backend.watch(settings, baseline=baseline)
