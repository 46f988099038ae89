"""Turn a finished vmadm power command into a `TaskOutcome` (docs/fsm.md §3.6, docs/driver.md).

vmadm prints its human message on stderr, optionally after bunyan JSON debug lines (when
`VMADM_DEBUG_LEVEL` is set) and, for usage errors (exit 2), before the usage text. So the
message is the last non-empty stderr line that is not a bunyan JSON line; if a `Usage:`
line follows the error, the line before it. Then, in order:

| exit  | message                                                   | kind      |
|-------|-----------------------------------------------------------|-----------|
| 0     | begins with `Successfully`                                | SUCCESS   |
| 0     | `... is already 'running'` (start)                        | NOOP      |
| 0     | `... is already not 'running' (currently: X)` (stop)      | NOOP      |
| != 0  | `first of 1 error: ... is already not 'running' ...` (-F) | NOOP      |
| != 0  | `No such zone configured` / `VM <uuid> not found` /       | NOT_FOUND |
|       | `bad statusCode: 404`                                     |           |
| any   | anything else (exit 0 with another text included)         | FAILURE   |

The outcome keeps vmadm's exit code and its message with every occurrence of the VM's uuid
replaced by the VM's hostname. A command the driver killed at its time limit is a FAILURE
with returncode 124 (the convention of coreutils `timeout`); a command that could not be run
(node unreachable, connection lost mid-command) is a FAILURE with 255 (ssh's convention) or
127 (missing executable).
"""

from __future__ import annotations

import json
import re

from vmd.model import OutcomeKind, TaskOutcome

TIMEOUT_RC = 124

_NOOP_START = "is already 'running'"
_NOOP_STOP = "is already not 'running'"
_NOT_FOUND = re.compile(
    r"No such zone configured|\bVM [0-9a-fA-F-]{36} not found\b|bad statusCode: 404"
)


def _is_bunyan(line: str) -> bool:
    if not line.startswith("{"):
        return False
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict)


def message_line(stderr: str) -> str:
    """vmadm's human message from its stderr (see the module docstring)."""
    lines = [s for s in (raw.strip() for raw in stderr.splitlines()) if s]
    lines = [s for s in lines if not _is_bunyan(s)]
    for i, line in enumerate(lines):
        if line.startswith("Usage:"):
            return lines[i - 1] if i else line
    return lines[-1] if lines else ""


def kind_of(returncode: int, message: str) -> OutcomeKind:
    if returncode == 0:
        if message.startswith("Successfully"):
            return OutcomeKind.SUCCESS
        if _NOOP_START in message or _NOOP_STOP in message:
            return OutcomeKind.NOOP
        return OutcomeKind.FAILURE
    if message.startswith("first of 1 error:") and _NOOP_STOP in message:
        return OutcomeKind.NOOP
    if _NOT_FOUND.search(message):
        return OutcomeKind.NOT_FOUND
    return OutcomeKind.FAILURE


def humanize(message: str, uuid: str | None, hostname: str | None) -> str:
    """The message with the VM's uuid replaced by its hostname (what users know)."""
    if uuid and hostname:
        return message.replace(uuid, hostname)
    return message


def classify(
    returncode: int,
    stderr: str,
    *,
    uuid: str | None = None,
    hostname: str | None = None,
) -> TaskOutcome:
    """The outcome of a vmadm power command that ran to its end."""
    message = message_line(stderr)
    kind = kind_of(returncode, message)
    if not message:
        message = f"vmadm exited with code {returncode} and printed no message"
    return TaskOutcome(kind, returncode, humanize(message, uuid, hostname))


def timed_out(what: str, seconds: float, stderr: str = "") -> TaskOutcome:
    """A command the driver killed at its time limit: its outcome on the node is unknown."""
    tail = message_line(stderr)
    extra = f" (last message: {tail})" if tail else ""
    return TaskOutcome(
        OutcomeKind.FAILURE,
        TIMEOUT_RC,
        f"{what} did not finish within {seconds:g} s and was killed{extra}",
    )


def not_run(what: str, returncode: int, reason: str) -> TaskOutcome:
    """A command that could not be run, or whose connection was lost while it ran."""
    return TaskOutcome(OutcomeKind.FAILURE, returncode, f"{what}: {reason}")
