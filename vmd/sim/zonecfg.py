"""`vmd-zonecfg`: the part of illumos `zonecfg` that vmd's driver uses, on the simulated node.

Why it exists: on SmartOS, qemu (KVM) and bhyve run inside the VM's zone, so an ISO image in
the node's ISO directory is visible to the guest only through a lofs mount of that directory
at `/iso` in the zone, a zonecfg `fs` resource (docs/driver.md, Starting from an ISO).
vmd's driver adds that resource before a start from an ISO; this command lets the tests see
it happen.

Subset: `vmd-zonecfg -z <zone> <subcommands>`, the subcommands joined by spaces and
separated by `;` as zonecfg reads them from its command line:

- `info fs [prop=value ...]`: every fs resource (matching the filters), in zonecfg's format;
- `add fs`, then `set dir=`, `set special=`, `set type=`, `set raw=`, `add options [a,b]`,
  and `end`; the change is committed when the command line ends, all or nothing (an error
  anywhere commits nothing);
- `commit` and `exit` are accepted.

The resources live in the VM record as `filesystems` (`{type, source, target, options}`, as
`vmadm get` shows them), so a change is one `modify` event like any other. Every call is
logged in `calls.jsonl` like a vmadm call (with `"prog": "zonecfg"` and its `REQ_ID`), and
`fail_next`/`hang_next`/`delay_next` entries with `"cmd": "zonecfg"` apply to it. Texts for
errors illumos' zonecfg sources do not give (a missing property, a duplicate `dir`) are chosen here.
"""

from __future__ import annotations

import signal
import sys

from vmd.sim.cmdio import Fail, Io
from vmd.sim.env import EnvError, is_uuid, load_env

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from vmd.sim.env import Env

    Json = dict[str, Any]

PROG = "vmd-zonecfg"
USAGE = "usage:\tzonecfg -z <zone> <subcommand>[; <subcommand> ...]"
FS_PROPS = ("dir", "special", "raw", "type")


def _fs_lines(fs: Json) -> list[str]:
    lines = ["fs:", f"\tdir: {fs.get('target')}", f"\tspecial: {fs.get('source')}"]
    lines.append(f"\traw: {fs['raw']}" if fs.get("raw") else "\traw not specified")
    lines.append(f"\ttype: {fs.get('type')}")
    options = fs.get("options") or []
    if options:
        lines.append(f"\toptions: [{','.join(options)}]")
    return lines


_KEYS = {"dir": "target", "special": "source", "raw": "raw", "type": "type"}


def _info(zone: str, filesystems: list[Json], words: list[str], io: Io) -> None:
    if not words or words[0] != "fs":
        raise Fail(f'{PROG}: "info {" ".join(words)}" is not simulated (only "info fs")')
    filters = []
    for word in words[1:]:
        prop, eq, value = word.partition("=")
        if not eq or prop not in _KEYS:
            raise Fail(f"{zone}: invalid filter: {word}")
        filters.append((_KEYS[prop], value))
    for fs in filesystems:
        if all(str(fs.get(k)) == v for k, v in filters):
            for line in _fs_lines(fs):
                io.out(line + "\n")


def _options(text: str) -> list[str]:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return [o.strip() for o in text.split(",") if o.strip()]


def _end(zone: str, fs: Json, filesystems: list[Json]) -> None:
    for prop in ("dir", "special", "type"):
        if not fs.get(_KEYS[prop]):
            raise Fail(f"{zone}: {prop} not specified")
    if not str(fs["target"]).startswith("/"):
        raise Fail(f"{zone}: invalid dir: {fs['target']} (an absolute path)")
    if any(f.get("target") == fs["target"] for f in filesystems):
        raise Fail(f"{zone}: Could not add fs: an fs resource with dir {fs['target']} exists")
    filesystems.append(fs)


def _in_fs(zone: str, fs: Json, words: list[str], filesystems: list[Json]) -> bool:
    """One subcommand inside an `add fs` scope; True when the scope ended."""
    if words == ["end"]:
        _end(zone, fs, filesystems)
        return True
    if len(words) == 2 and words[0] == "set":
        prop, eq, value = words[1].partition("=")
        if not eq or prop not in FS_PROPS:
            raise Fail(f"{zone}: fs: cannot set {words[1]!r}")
        fs[_KEYS[prop]] = value
        return False
    if len(words) >= 2 and words[:2] == ["add", "options"]:
        fs.setdefault("options", []).extend(_options(" ".join(words[2:])))
        return False
    raise Fail(f"{zone}: fs: unexpected subcommand {' '.join(words)!r}")


def run(env: Env, io: Io, argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "-z" or not argv[1]:
        raise Fail(USAGE, 2)
    zone, text = argv[1], " ".join(argv[2:])
    subcommands = [c.split() for c in text.split(";") if c.strip()]
    if not subcommands:
        raise Fail(f"{PROG}: interactive mode is not simulated")
    from vmd.sim.clock import read_rec

    rec = read_rec(env, zone) if is_uuid(zone) else None
    if rec is None:
        raise Fail(f"{zone}: No such zone configured")
    filesystems = [dict(f) for f in rec["config"].get("filesystems", [])]
    changed = False
    scope: Json | None = None
    for words in subcommands:
        if scope is not None:
            if _in_fs(zone, scope, words, filesystems):
                scope, changed = None, True
        elif words[0] == "info":
            _info(zone, filesystems, words[1:], io)
        elif words == ["add", "fs"]:
            scope = {}
        elif words[0] not in ("commit", "exit"):
            raise Fail(f'{PROG}: "{" ".join(words)}" is not simulated')
    if scope is not None:
        raise Fail(f"{zone}: fs resource incomplete (no end)")
    if changed:
        _commit(env, zone, filesystems)
    return 0


def _commit(env: Env, zone: str, filesystems: list[Json]) -> None:
    from vmd.sim.world import World

    with World(env) as w:
        if w.rec(zone) is None:
            raise Fail(f"{zone}: No such zone configured")
        w.set_config(zone, filesystems=filesystems)


def main(argv: list[str] | None = None) -> int:
    from vmd.sim.faults import apply_faults, take_faults
    from vmd.sim.vmadm import record_end, record_start

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    args = sys.argv[1:] if argv is None else argv
    try:
        env = load_env(PROG)
    except EnvError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    io = Io()
    call_id = record_start(env, args, prog="zonecfg")
    zone = args[1] if len(args) > 1 and args[0] == "-z" and is_uuid(args[1]) else None
    try:
        code = apply_faults(env, io, take_faults(env, "zonecfg", "zonecfg", zone, any_cmd=False))
        if code is None:
            code = run(env, io, args)
    except Fail as exc:
        io.err(exc.message)
        code = exc.code
    sys.stdout.flush()
    record_end(env, call_id, code, io)
    return code
