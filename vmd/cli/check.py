"""`vmd check -c FILE`: validate a settings file before (re)starting, like `nginx -t`.

Why: a bad key found at start costs a failed start (under systemd a restart attempt and a
journal to read); found here it costs nothing, and every problem of the file is listed at
once, one per line on stderr, each naming the file, section and key. Exit 0 with a one-line
summary on stdout when the file is valid, exit 2 otherwise (2, like every configuration
error of `vmd`; the units stop restarting on it with RestartPreventExitStatus=2).

Besides the file itself (vmd.settings: unknown keys and sections, types, ranges), it checks
this machine: the files and commands the file names must exist (vmd.settings.paths: the
agent's SSH key and known_hosts files, its ISO directory and local vmadm). `--no-paths`
skips that, to check a file meant for another machine (a template, a file in CI).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmd import config

# Which sections each process needs; without --for a file must be good for one of them.
ROLES: dict[str, tuple[str, ...]] = {
    "daemon": ("broker", "daemon"),
    "agent": ("broker", "agent"),
    "api": ("api",),
}
EXIT_PROBLEMS = 2


def run(path: Path, role: str | None = None, *, check_paths: bool = True) -> int:
    # Imported here: `vmd --help`, `vmd config` and `vmd systemd` need no schema (pydantic).
    from vmd import config
    from vmd.settings import paths as machine

    # Without --for: the gateway's file has only [api] (its broker URL is inside it); the
    # daemon's and the agent's need [broker].
    if role:
        required = ROLES[role]
    else:
        raw_api_only = config.check(path, sections=("api",)) == []
        required = () if raw_api_only else ("broker",)
    problems = config.check(path, sections=required)
    settings = None
    if not problems:
        settings = config.load(path)
        if role is None and settings.daemon is None and settings.agent is None \
                and settings.api is None:
            problems.append(f"{path}: neither [daemon], [agent] nor [api]: nothing for vmd to run")
        if check_paths:
            problems.extend(f"{path}: {line}" for line in machine.problems(settings.agent))
    if problems or settings is None:
        for line in problems:
            print(line, file=sys.stderr)
        n = len(problems)
        print(f"vmd check: {path}: {n} problem{'s' if n != 1 else ''}", file=sys.stderr)
        return EXIT_PROBLEMS
    print(f"vmd check: {path}: ok ({_summary(settings)})")
    return 0


def _summary(s: config.Settings) -> str:
    parts = []
    if s.daemon is not None:
        parts.append(f"daemon shard {s.daemon.shard}, store {s.daemon.store}")
        n_admins, n_owners = len(s.auth.admins), len(s.auth.owners)
        n_agents = len(s.auth.agents)
        parts.append(f"{n_admins} admin{'s' if n_admins != 1 else ''}, "
                     f"{n_owners} owner{'s' if n_owners != 1 else ''}, "
                     f"{n_agents} agent user{'s' if n_agents != 1 else ''}")
    if s.agent is not None:
        where = (f"ssh {s.agent.ssh.username}@{s.agent.ssh.host}:{s.agent.ssh.port}"
                 if s.agent.ssh is not None else "local")
        parts.append(f"agent for node {s.agent.node} ({where})")
    if s.api is not None:
        parts.append(f"api on {s.api.listen}{s.api.prefix}, {len(s.api.keys)} keys")
    parts.append(f"log {s.log.level}/{s.log.format}")
    return "; ".join(parts)
