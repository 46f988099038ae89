"""Output of one vmadm invocation, and how a command ends early.

vmadm prints results on stdout and its messages on stderr (also success messages);
`Io` writes both and keeps a copy for the calls log. `Fail` ends a command with a
message on stderr and exit 1; `Usage` with the message, the usage text and exit 2.
"""

from __future__ import annotations

import sys

OUT_KEEP = 4096


class Fail(Exception):
    """A vmadm error: `message` on stderr, exit `code` (1 unless said otherwise)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Usage(Exception):
    """A usage error: `message` (if any) and the usage text on stderr, exit 2."""

    def __init__(self, message: str | None) -> None:
        super().__init__(message or "")
        self.message = message


class Io:
    """stdout/stderr of the invocation, with a bounded copy for calls.jsonl."""

    def __init__(self) -> None:
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        self._kept = 0

    def err(self, line: str) -> None:
        self.stderr.append(line)
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def out(self, text: str, *, flush: bool = False) -> None:
        if self._kept < OUT_KEEP:
            self.stdout.append(text[: OUT_KEEP - self._kept])
            self._kept += len(text)
        sys.stdout.write(text)
        if flush:
            sys.stdout.flush()
