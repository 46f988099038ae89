"""Run Python code in a child process under the rule of systemd's MemoryDenyWriteExecute=yes.

vmd's units set `MemoryDenyWriteExecute=yes`; since Linux 6.3 the kernel offers the same
rule to any process (prctl PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN), so a test can run what a
service runs under it without systemd: the child applies the rule to itself, checks that a
memory mapping both writable and executable is refused (the rule is in force), then runs
the test's code. One prelude for every such test (the daemon's imports, the gateway, the
store's libpq), and one skip: where the kernel has no PR_SET_MDWE.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

_PRELUDE = textwrap.dedent("""
    import ctypes, mmap, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        print("unsupported", os.strerror(ctypes.get_errno()))
        sys.exit(3)
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        sys.exit("W+X memory was allowed: the rule is not in force")
    except OSError:
        pass
""")
_UNSUPPORTED = 3


def run_under_mdwe(body: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `body` (Python source, dedented here; `args` as sys.argv[1:]) in a child under
    PR_SET_MDWE and return the finished process; skip the calling test where the kernel has
    no PR_SET_MDWE."""
    done = subprocess.run([sys.executable, "-c", _PRELUDE + textwrap.dedent(body), *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if done.returncode == _UNSUPPORTED and done.stdout.startswith("unsupported"):
        pytest.skip(f"kernel has no PR_SET_MDWE (Linux >= 6.3): {done.stdout.strip()}")
    return done
