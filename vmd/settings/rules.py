"""Rules that join two keys or two tables, which a field's type cannot say.

They read the TOML document itself (not the validated records), so each one is reported
even when other keys of the file are wrong: `vmd check` lists every problem at once.
"""

from __future__ import annotations

from typing import Any


def _table(raw: Any, *names: str) -> dict[str, Any]:
    for name in names:
        raw = raw.get(name) if isinstance(raw, dict) else None
    return raw if isinstance(raw, dict) else {}


def problems(raw: dict[str, Any]) -> list[str]:
    """Each broken rule as `[section] key: text` (the caller prefixes the file)."""
    out: list[str] = []
    agent = _table(raw, "agent")
    if "agent" in raw:
        has_ssh = "ssh" in agent
        if agent.get("transport") == "ssh" and not has_ssh:
            out.append('[agent.ssh] host: missing (required with transport = "ssh")')
        elif has_ssh and agent.get("transport", "local") == "local":
            out.append('[agent.ssh]: read only with transport = "ssh" (add it to [agent], '
                       "or remove [agent.ssh])")
    auth = _table(raw, "auth")
    admins = auth.get("admins")
    principals = set(_table(raw, "auth", "owners"))
    if isinstance(admins, list):
        principals |= {name for name in admins if isinstance(name, str)}
    for user in sorted(principals & set(_table(raw, "auth", "agents"))):
        out.append(f"[auth.agents] {user}: is also a principal in [auth]: a node agent's "
                   "broker user must not send requests")
    return out


def required_tables(raw: dict[str, Any]) -> list[str]:
    """Tables a section requires: [daemon] needs [auth.agents] (listed after the other
    problems: a missing table is the first thing to fix once the rest reads well)."""
    if "daemon" in raw and "agents" not in _table(raw, "auth"):
        return ["[auth.agents] missing (required with [daemon]: the broker user of "
                "each node agent = [the nodes it reports for], docs/security.md)"]
    return []
