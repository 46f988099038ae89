"""What `vmd check` verifies on the machine itself: the files and commands a file names.

Why: a `known_hosts` file that is not there is found by the agent only when it connects
(and then again at every retry); `vmd check` finds it before the start. These checks are
about this machine, not the file: `vmd check --no-paths` skips them, to check a file
written for another machine (a template, a file in CI).

Only what the process reads as it is must exist: the agent's SSH key and known_hosts
files, and with vmadm run locally, the ISO directory and the vmadm and zonecfg commands.
Directories systemd creates at start (StateDirectory=: the store's, the agent's
state_dir) are not checked.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from vmd.settings.schema import AgentSettings


def problems(agent: AgentSettings | None) -> list[str]:
    """Each missing file or command as `[section] key: text` (the caller prefixes the file)."""
    if agent is None or agent.backend == "memory":
        return []
    if agent.transport == "ssh":
        return _ssh(agent)
    out = []
    if not Path(agent.iso_dir).is_dir():
        out.append(f"[agent] iso_dir: {agent.iso_dir}: no such directory")
    for key, argv in (("vmadm", agent.vmadm), ("zonecfg", agent.zonecfg)):
        if not _runnable(argv[0]):
            out.append(f"[agent] {key}: {argv[0]}: no such executable"
                       f"{'' if '/' in argv[0] else ' on PATH'}")
    return out


def _ssh(agent: AgentSettings) -> list[str]:
    ssh = agent.ssh
    if ssh is None:
        return []
    out = []
    if not ssh.known_hosts.is_file():
        out.append(f"[agent.ssh] known_hosts: {ssh.known_hosts}: no such file (the agent "
                   "verifies the node's host key against it)")
    out.extend(f"[agent.ssh] client_keys: {key}: no such file"
               for key in ssh.client_keys if not key.is_file())
    return out


def _runnable(program: str) -> bool:
    if "/" in program:
        return os.path.isfile(program) and os.access(program, os.X_OK)
    return shutil.which(program) is not None
