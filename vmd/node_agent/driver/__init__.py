"""The driver: what runs vmadm on one node (locally or over SSH) and watches it.

It knows nothing of the bus, of tasks or of the daemon (import-linter contract
`agent-driver`): the agent above it turns orders into calls and results into reports.

The contract is one protocol, `Backend` (`backend.py`), satisfied structurally by `Vmadm`,
`MemoryNode` and the `Metered` wrapper:

- power actions (`start` and `stop` take one `PowerCall` value; `reboot`, `update`,
  `current`) always return a `TaskOutcome` (data, even for a node that cannot be reached
  or a command killed at its time limit); only invalid arguments (`ValidationError`,
  before anything runs) and refused SSH settings or host keys (`SshConfigError`,
  `HostKeyRejected`) raise;
- queries (`get`, `listing`, `isos`) return data or raise a `DriverError`;
- `watch()` yields the node's power changes as `Observation`s until cancelled;
- `for_task(task_id)` is the same backend with vmadm's `REQ_ID` set to the task id.

`open_backend(settings)` builds the backend `[agent]` asks for. The modules:

- `Vmadm` (`vmadm.py`): power actions, queries, `watch()`; `isoprep.py` prepares a zone for
  an ISO start.
- Runners (`runner.py`, `ssh.py`): `LocalRunner`, `SshRunner`, behind the `Runner` protocol.
- `NodeWatcher`, `WatchSettings`, `WatchStats` (`watch.py`) over `events.py`'s parsing.
- `Timeouts` and argv (`commands.py`), errors (`errors.py`), edge checks (`validate.py`),
  result classification (`classify.py`), vmadm's JSON (`nodejson.py`).
- `Metered` (`metered.py`): a `Backend` that counts every call for Prometheus.
- `MemoryNode` (`memory.py`): the in-process simulated hypervisor of `backend = "memory"`.
"""

from .backend import Backend, Opened, open_backend
from .commands import PowerCall, Timeouts
from .errors import (
    CannotExecute,
    DriverError,
    HostKeyRejected,
    NodeUnreachable,
    RunnerError,
    SshConfigError,
    ValidationError,
    VmadmError,
)
from .runner import LocalRunner, Runner, RunResult, Stream
from .ssh import SshRunner
from .vmadm import Vmadm
from .watch import NodeWatcher, WatchSettings, WatchStats

__all__ = [
    "Backend",
    "CannotExecute",
    "DriverError",
    "HostKeyRejected",
    "LocalRunner",
    "NodeUnreachable",
    "NodeWatcher",
    "Opened",
    "PowerCall",
    "RunResult",
    "Runner",
    "RunnerError",
    "SshConfigError",
    "SshRunner",
    "Stream",
    "Timeouts",
    "ValidationError",
    "Vmadm",
    "VmadmError",
    "WatchSettings",
    "WatchStats",
    "open_backend",
]
