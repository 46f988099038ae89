"""The exceptions of the vmadm driver, each rendered as one clear line.

They are split by what the caller must do about them:

- `ValidationError`: the caller passed something unsafe or malformed; nothing was run.
- `RunnerError` (and `NodeUnreachable`, `CannotExecute`): the command could not be run, or
  its outcome is unknown (connection lost mid-command). Power actions turn these into a
  FAILURE `TaskOutcome` (data, not an exception), so a task always ends with a result.
- `HostKeyRejected`, `SshConfigError`: the node is not who it claims to be, or the SSH
  settings are unusable. These are never turned into data: the agent must stop and an
  operator must act (never accept an unknown or changed host key).
- `VmadmError`: a query (`get`, `lookup`, listing the ISO directory) failed or printed
  something unparsable.
"""

from __future__ import annotations


class DriverError(Exception):
    """Base of every error the vmadm driver raises on purpose."""


class ValidationError(DriverError, ValueError):
    """A value failed the edge checks; no command was built or run."""


class RunnerError(DriverError):
    """The command could not be run, or its outcome is unknown.

    `returncode` is the code a power action reports for it (255 like ssh(1) for an
    unreachable node, 127 like a shell for a missing executable).
    """

    returncode = 255


class NodeUnreachable(RunnerError):
    """No SSH connection to the node (connect failed, lost, or in reconnect back-off)."""

    returncode = 255


class CannotExecute(RunnerError):
    """The local executable could not be started (missing, not executable)."""

    returncode = 127


class HostKeyRejected(DriverError):
    """The node's SSH host key is unknown or changed: a hard error, never accepted."""


class SshConfigError(DriverError):
    """The SSH settings cannot work (no client key, missing known_hosts file, ...)."""


class VmadmError(DriverError):
    """A vmadm query failed or its output could not be understood."""
