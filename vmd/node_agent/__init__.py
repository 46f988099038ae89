"""The node side: runs vmadm locally or over SSH, watches the node, reports to the daemon.

The driver's public API (the agent process is built on it):

- `Vmadm` (`vmadm.py`): power actions returning `TaskOutcome`s, queries, `watch()`.
- Runners (`runner.py`, `ssh.py`): `LocalRunner`, `SshRunner`, behind the `Runner` protocol.
- `NodeWatcher`, `WatchSettings`, `WatchStats` (`watch.py`): the node's power changes.
- `Timeouts` (`commands.py`), errors (`errors.py`), edge checks (`validate.py`),
  result classification (`classify.py`).
"""

from .commands import Timeouts
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
    "CannotExecute",
    "DriverError",
    "HostKeyRejected",
    "LocalRunner",
    "NodeUnreachable",
    "NodeWatcher",
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
]
