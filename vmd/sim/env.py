"""The simulator's environment: state root, time scale, clocks and identifiers.

Every `vmd-vmadm` invocation is a fresh Python process, so this module (like the
whole package) imports only cheap stdlib modules; `typing` is imported for the type
checker only.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Json = dict[str, Any]

# Poll interval of blocking commands and of `events`: 50 ms at scale 1, scaled, but
# never below POLL_FLOOR (timescale 0 must not spin hot) nor above POLL_CEILING
# (a slowed-down world must still stream events promptly).
POLL_BASE = 0.05
POLL_FLOOR = 0.005
POLL_CEILING = 0.1


class EnvError(Exception):
    """The environment is unusable (one line for the user, exit 2)."""


class Env:
    """Where the simulated node lives and how fast its time runs."""

    __slots__ = ("poll", "root", "scale")

    def __init__(self, root: str, scale: float) -> None:
        self.root = root
        self.scale = scale
        self.poll = max(POLL_FLOOR, min(POLL_BASE * scale, POLL_CEILING))

    def seconds(self, simulated: float) -> float:
        """Real seconds for a simulated duration."""
        return simulated * self.scale

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)


def load_env(prog: str) -> Env:
    """Read VMADM_SIM_ROOT (an existing directory) and VMADM_SIM_TIMESCALE; lay out the root."""
    root = os.environ.get("VMADM_SIM_ROOT", "")
    if not root:
        raise EnvError(f"{prog}: VMADM_SIM_ROOT is not set (the simulated node's state directory)")
    raw = os.environ.get("VMADM_SIM_TIMESCALE", "1.0") or "1.0"
    try:
        scale = float(raw)
    except ValueError:
        raise EnvError(f"{prog}: VMADM_SIM_TIMESCALE must be a number, got {raw!r}") from None
    if not scale >= 0.0 or scale == float("inf"):
        raise EnvError(f"{prog}: VMADM_SIM_TIMESCALE must be a finite number >= 0, got {raw!r}")
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise EnvError(f"{prog}: VMADM_SIM_ROOT {root} is not a directory")
    try:
        os.makedirs(os.path.join(root, "vms"), exist_ok=True)
        os.makedirs(os.path.join(root, "iso"), exist_ok=True)
    except OSError as exc:
        raise EnvError(f"{prog}: cannot use VMADM_SIM_ROOT {root}: {exc.strerror}") from None
    return Env(root, scale)


def iso(t: float) -> str:
    """ISO-8601 UTC with milliseconds, as JavaScript's Date.toISOString()."""
    ms = int(t * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def now_iso() -> str:
    return iso(time.time())


def new_uuid() -> str:
    """A random (version 4) UUID, without importing the uuid module."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_uuid(s: str) -> bool:
    """vmadm's own check: 36 characters with dashes at 8, 13, 18 and 23."""
    return len(s) == 36 and s[8] == "-" and s[13] == "-" and s[18] == "-" and s[23] == "-"
