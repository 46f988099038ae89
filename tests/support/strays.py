"""Processes of the simulator that outlived the test that started them.

A test that SIGKILLs an agent (a crash, on purpose) leaves the agent's `vmd-vmadm events`
child running: nobody reads it any more, and it stops only when its next write fails,
which on a node nobody touches is never (a real `vmadm events` behaves the same). Each such
orphan polls its node's directory for the rest of the machine's life (~1 % of a core).
`kill_strays` finds every process whose `VMADM_SIM_ROOT` lies under a directory and kills
it; the session fixture in tests/conftest.py runs it on pytest's base temp directory.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def _sim_root(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
    except OSError:
        return None  # gone, or not ours to read
    for entry in environ.split(b"\0"):
        if entry.startswith(b"VMADM_SIM_ROOT="):
            return entry[len(b"VMADM_SIM_ROOT="):].decode(errors="replace")
    return None


def kill_strays(under: Path) -> list[int]:
    """SIGKILL every process (but this one) whose VMADM_SIM_ROOT is under `under`."""
    prefix = str(under.resolve()) + os.sep
    killed = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        root = _sim_root(int(name))
        if root is not None and (root + os.sep).startswith(prefix):
            try:
                os.kill(int(name), signal.SIGKILL)
                killed.append(int(name))
            except ProcessLookupError:
                pass
    return killed
