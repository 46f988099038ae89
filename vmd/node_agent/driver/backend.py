"""What the agent needs of a hypervisor: one small protocol, two implementations.

The agent process (`vmd.node_agent.agent`) has one code path whatever it drives:

- `Vmadm` (`vmadm.py`): the real vmadm, or the `vmd-vmadm` simulator, run through a
  `LocalRunner` or an `SshRunner`;
- `MemoryNode` (`memory.py`): an in-process simulated hypervisor for benchmarks and demos,
  imported only when `[agent] backend = "memory"` asks for it.

Both satisfy `Backend` structurally (no inheritance), and so does `Metered` (metered.py),
which wraps either: power actions return `TaskOutcome`s (a start or a stop takes one
`PowerCall` value, which a wrapper passes on whole), queries return data or raise
`DriverError`s, and `watch()` yields the node's power changes as `Observation`s.
`for_task(task_id)` is the same backend for one task's calls: vmadm's `REQ_ID` is then the
task id, so the node's vmadm logs name it. `open_backend` builds the one the settings ask for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from vmd.config import AgentSettings
from vmd.model import JsonObject, NodeName, Observation, TaskOutcome, VmUuid

from .commands import PowerCall
from .errors import SshConfigError
from .runner import LocalRunner, Runner
from .ssh import SshRunner
from .vmadm import Vmadm
from .watch import WatchSettings, WatchStats


class Watcher(Protocol):
    """`async for observation in watcher` until cancelled; `stats` for metrics."""

    stats: WatchStats

    def __aiter__(self) -> AsyncIterator[Observation]: ...


class Backend(Protocol):
    """The operations the agent runs on its node (the signatures of `Vmadm`)."""

    node: NodeName

    def for_task(self, task_id: str) -> Backend:
        """This backend, its calls carrying `task_id` (vmadm's `REQ_ID`)."""
        ...

    async def start(self, call: PowerCall) -> TaskOutcome: ...

    async def stop(self, call: PowerCall) -> TaskOutcome: ...

    async def reboot(
        self,
        uuid: str,
        *,
        hostname: str | None = None,
        force: bool = False,
        run_timeout: float | None = None,
    ) -> TaskOutcome: ...

    async def update(
        self,
        uuid: str,
        payload: Mapping[str, object],
        *,
        hostname: str | None = None,
        run_timeout: float | None = None,
    ) -> TaskOutcome: ...

    async def current(self, uuid: str, *, hostname: str | None = None) -> TaskOutcome: ...

    async def get(self, uuid: str) -> JsonObject | None: ...

    async def listing(self) -> dict[VmUuid, JsonObject]: ...

    async def isos(self) -> frozenset[str]: ...

    def watch(
        self,
        settings: WatchSettings | None = None,
        *,
        baseline: Mapping[VmUuid, JsonObject] | None = None,
    ) -> Watcher: ...


@dataclass(frozen=True, slots=True)
class Opened:
    """A backend and what the agent must do with it at the end (close its SSH connection)."""

    backend: Backend
    aclose: Callable[[], Awaitable[None]]
    runner: Runner | None = None  # for the SSH reconnect metric

    @property
    def ssh_reconnects(self) -> int:
        return self.runner.reconnects if isinstance(self.runner, SshRunner) else 0


async def _nothing() -> None:
    return None


def open_backend(settings: AgentSettings) -> Opened:
    """The backend of `[agent]`: `backend = "memory"`, else vmadm over `transport`.

    Raises `SshConfigError` for SSH settings that cannot work (no client key). Nothing is
    connected or started here: the SSH connection is opened by the first command.
    """
    node = NodeName(settings.node)
    if settings.backend == "memory":
        # Imported here: only an agent configured for benchmarks or demos loads it (memory.py).
        from .memory import MemoryNode

        return Opened(MemoryNode(node, settings.memory), _nothing)
    runner: Runner
    if settings.transport == "ssh":
        if settings.ssh is None:
            raise SshConfigError("[agent.ssh] is required with transport = \"ssh\"")
        runner = SshRunner(settings.ssh)
    else:
        # The agent's own environment passes through (e.g. VMADM_SIM_ROOT for vmd-vmadm).
        runner = LocalRunner()
    vmadm = Vmadm(runner, node=node, vmadm=settings.vmadm, iso_dir=settings.iso_dir,
                  zonecfg=settings.zonecfg)
    return Opened(vmadm, runner.aclose, runner)
