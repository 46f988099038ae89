"""`vmd-vmadm`: vmadm's command line (docs/driver.md, vmadm fact 1), dispatch and audit.

Argument handling mirrors vmadm.js: nopt-style options anywhere on the line (short
clusters such as `-rj`, `--long[=value]`, unknown options ignored, invalid numbers
dropped), the UUID check (`Invalid or missing UUID for <cmd>`, where `halt` is
already rewritten to `stop`), usage errors with exit 2, other errors with exit 1.
Before a command runs, injected faults are consumed (vmd.sim.faults). Every
invocation is recorded in calls.jsonl: a start line, then an end line with the exit
code and output, so a call that is still running or was killed is visible too.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from vmd.sim import store
from vmd.sim.cmdio import Fail, Io, Usage
from vmd.sim.env import EnvError, is_uuid, load_env, now_iso
from vmd.sim.faults import apply_faults, take_faults

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from vmd.sim.env import Env

    Json = dict[str, Any]
    Spec = tuple[str, str, Any]  # an option: (long name, kind, the constant of a flag)

PROG = "/usr/vm/sbin/vmadm"
COMMANDS = (
    "start", "boot", "console", "create", "create-snapshot", "delete", "destroy",
    "delete-snapshot", "events", "stop", "halt", "help", "info", "install", "get", "json",
    "kill", "list", "lookup", "reboot", "receive", "recv", "reprovision",
    "rollback-snapshot", "send", "sysrq", "update", "validate",
)  # fmt: skip
CANONICAL = {"boot": "start", "halt": "stop", "json": "get", "destroy": "delete", "recv": "receive"}
USAGE_LINES = (
    "",
    "create [-f <filename>]",
    "create-snapshot <uuid> <snapname>",
    "console <uuid>",
    "delete <uuid>",
    "delete-snapshot <uuid> <snapname>",
    "events [-f] [-j] [-r] [uuid]",
    "get <uuid>",
    "info <uuid> [type,...]",
    "install <uuid>",
    "kill [-s SIGNAL|-SIGNAL] <uuid>",
    "list [-p] [-H] [-o field,...] [-s field,...] [field=value ...]",
    "lookup [-j|-1] [-o field,...] [field=value ...]",
    "reboot <uuid> [-F]",
    "receive [-f <filename>]",
    "reprovision [-f <filename>]",
    "rollback-snapshot <uuid> <snapname>",
    "send <uuid> [target]",
    "start <uuid> [option=value ...]",
    "stop <uuid> [-F] [-t timeout]",
    "sysrq <uuid> <nmi|screenshot>",
    "update <uuid> [-f <filename>]",
    " -or- update <uuid> property=value [property=value ...]",
    "validate create [-f <filename>]",
    "validate update <brand> [-f <filename>]",
    "",
    "For more detailed information on the use of this command,type 'man vmadm'.",
)

# Option specs per command: short letter -> (long name, kind, constant for flags).
_COMMON = {"v": ("verbose", "flag", True), "d": ("debug", "flag", True)}
_STOP = {"F": ("force", "flag", True), "t": ("timeout", "number", None)}
_OPTS: dict[str, dict[str, tuple[str, str, Any]]] = {
    "stop": _STOP,
    "halt": _STOP,
    "reboot": _STOP,
    "lookup": {
        "j": ("json", "flag", True),
        "o": ("output", "string", None),
        "1": ("unique", "flag", True),
    },
    "list": {
        "o": ("order", "string", None),
        "s": ("sortby", "string", None),
        "p": ("parsable", "flag", True),
        "h": ("header", "flag", True),
        "H": ("header", "flag", False),
    },
    "events": {
        "f": ("full", "flag", True),
        "j": ("json", "flag", True),
        "r": ("ready", "flag", True),
    },
    "update": {"f": ("file", "string", None)},
}


def usage_text() -> str:
    return "\n".join((f"Usage: {PROG} <command> [options]", *USAGE_LINES)) + "\n"


def parse_opts(cmd: str, args: list[str]) -> tuple[Json, list[str]]:
    """nopt's behaviour for the options vmadm declares; returns (options, the rest)."""
    shorts = {**_COMMON, **_OPTS.get(cmd, {})}
    # --header means true; only -H (a shorthand) turns a flag off.
    longs = {name: (name, kind, True) for name, kind, _ in shorts.values()}
    opts: Json = {}
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg.startswith("--") and len(arg) > 2:
            i = _long_option(opts, arg, args, i, longs)
        elif arg.startswith("-") and len(arg) > 1:
            i = _short_options(opts, arg, args, i, shorts)
        else:
            rest.append(arg)
    return opts, rest


def _long_option(opts: Json, arg: str, args: list[str], i: int, longs: dict[str, Spec]) -> int:
    """`--name[=value]` (a value may be the next argument); the index of the next argument."""
    name, eq, value = arg[2:].partition("=")
    spec = longs.get(name)
    if spec is None:
        return i  # nopt ignores an unknown option
    if spec[1] == "flag":
        opts[name] = value not in ("false", "0") if eq else spec[2]
    elif eq:
        _take(opts, name, spec[1], value)
    elif i < len(args):
        _take(opts, name, spec[1], args[i])
        return i + 1
    return i


def _short_options(opts: Json, arg: str, args: list[str], i: int,
                   shorts: dict[str, Spec]) -> int:
    """A cluster of short options (`-rj`, `-t30`, `-t 30`: a value ends the cluster); the
    index of the next argument."""
    letters = arg[1:]
    for j, letter in enumerate(letters):
        spec = shorts.get(letter)
        if spec is None:
            continue
        if spec[1] == "flag":
            opts[spec[0]] = spec[2]
            continue
        value = letters[j + 1 :]
        if not value and i < len(args):
            value = args[i]
            i += 1
        if value:
            _take(opts, spec[0], spec[1], value)
        break
    return i


def _take(opts: Json, name: str, kind: str, value: str) -> None:
    """An option's value: a string, or a number as nopt reads it (an invalid one dropped)."""
    if kind == "number":
        try:
            num = float(value)
        except ValueError:
            return  # nopt drops an invalid number
        if num != num or num in (float("inf"), float("-inf")):
            return
        opts[name] = int(num) if num.is_integer() else num
    else:
        opts[name] = value


def get_uuid(cmd: str, rest: list[str]) -> str:
    if rest and is_uuid(rest[0]):
        return rest.pop(0)
    raise Usage(f"Invalid or missing UUID for {cmd}")


def parse_start_args(args: list[str]) -> Json:
    """vmadm.js parseStartArgs: `order=` once, `cdrom=`/`disk=` as path,model."""
    extra: Json = {}
    for arg in args:
        key, _, value = arg.partition("=")
        if key == "order":
            if "boot" in extra:
                raise Usage("You can only specify 'order' once when starting a VM")
            extra["boot"] = "order=" + value
        elif key in ("disk", "cdrom"):
            parts = value.split(",")
            path = parts[0]
            model = parts[1] if len(parts) > 1 else ""
            if not path or not model:
                raise Usage(f"Parameter to {key} must be: path,model")
            extra.setdefault("disks", []).append({"path": path, "model": model, "media": key})
        else:
            raise Usage(f"Invalid argument to start: {key}")
    return extra


def _debug_noise(io: Io, cmd: str) -> None:
    level = os.environ.get("VMADM_DEBUG_LEVEL")
    if not level or level == "fatal":
        return
    for msg in (f"{cmd}: loading VM", f"{cmd}: request handled"):
        line = {"name": "vmadm", "hostname": "sim", "pid": os.getpid(), "level": 20}
        line.update({"msg": msg, "time": now_iso(), "v": 0})
        io.err(json.dumps(line, separators=(",", ":")))


def run(env: Env, io: Io, argv: list[str]) -> int:
    if not argv:
        raise Usage(None)
    cmd = argv[0]
    if cmd in ("-h", "-?", "help"):
        sys.stdout.write(usage_text())
        return 0
    if cmd not in COMMANDS:
        raise Usage(f'Invalid command: "{cmd}".')
    opts, rest = parse_opts(cmd, argv[1:])
    canonical = CANONICAL.get(cmd, cmd)
    shown = "stop" if cmd == "halt" else cmd
    uuid: str | None = None
    extra: Json = {}
    if canonical in ("start", "stop", "reboot", "get", "update"):
        uuid = get_uuid(shown, rest)
        if canonical == "start":
            extra = parse_start_args(rest)
    elif canonical == "events" and rest:
        uuid = rest[0]
    elif canonical not in ("list", "lookup", "events"):
        raise Fail(f'vmd-vmadm: "{cmd}" is not simulated')
    code = apply_faults(env, io, take_faults(env, cmd, CANONICAL.get(cmd, cmd), uuid))
    if code is not None:
        return code
    if canonical != "events":
        _debug_noise(io, canonical)
    return _dispatch(env, io, canonical, uuid, opts, rest, extra)


def _get(env: Env, io: Io, uuid: str) -> int:
    """`vmadm get`: the object as pretty JSON, without list's fake fields."""
    from vmd.sim.clock import read_rec, settle_if_due
    from vmd.sim.vmobj import render

    settle_if_due(env)
    rec = read_rec(env, uuid)
    if rec is None:
        raise Fail(f"zoneadm: {uuid}: No such zone configured")
    io.out(store.dumps(render(rec), indent=2) + "\n")
    return 0


def _dispatch(
    env: Env, io: Io, cmd: str, uuid: str | None, opts: Json, rest: list[str], extra: Json
) -> int:
    # Import only what this command needs: every invocation is a fresh process.
    if cmd in ("start", "stop", "reboot") and uuid:
        from vmd.sim import power

        if cmd == "start":
            return power.start(env, io, uuid, extra)
        force = bool(opts.get("force"))
        if cmd == "stop":
            return power.stop(env, io, uuid, force=force, timeout=opts.get("timeout"))
        return power.reboot(env, io, uuid, force=force)
    if cmd == "update" and uuid:
        from vmd.sim import update

        return update.update(env, io, uuid, opts, rest)
    if cmd == "events":
        from vmd.sim import events

        return events.events(env, io, opts, rest)
    if cmd == "get" and uuid:
        return _get(env, io, uuid)
    from vmd.sim import listing

    if cmd == "list":
        return listing.list_(env, io, opts, rest)
    return listing.lookup(env, io, opts, rest)


def record_start(env: Env, argv: list[str], *, prog: str | None = None) -> str:
    """The start line of a call in calls.jsonl (`prog`: another program than vmadm)."""
    call_id = f"{os.getpid()}-{time.time_ns()}"
    entry: Json = {"ev": "start", "id": call_id, "argv": argv, "t": now_iso()}
    if prog is not None:
        entry["prog"] = prog
    entry.update(store.owner_token())
    for var in ("REQ_ID", "VMADM_IDENT"):
        if var in os.environ:
            entry[var.lower()] = os.environ[var]
    store.append_lines(env.path(store.CALLS), [store.dumps(entry)])
    return call_id


def record_end(env: Env, call_id: str, code: int, io: Io) -> None:
    entry = {
        "ev": "end",
        "id": call_id,
        "exit": code,
        "t": now_iso(),
        "stderr": "\n".join(io.stderr),
        "stdout": "".join(io.stdout),
    }
    store.append_lines(env.path(store.CALLS), [store.dumps(entry)])


def main(argv: list[str] | None = None) -> int:
    # Like node: ^C ends the process by the signal, without a Python traceback.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    args = sys.argv[1:] if argv is None else argv
    try:
        env = load_env("vmd-vmadm")
    except EnvError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    io = Io()
    fatal = os.environ.get("VMADM_SIM_FATAL")
    if fatal:
        io.err(f"FATAL: cannot run because: {fatal}")
        return 2
    call_id = record_start(env, args)
    try:
        code = run(env, io, args)
    except Fail as exc:
        io.err(exc.message)
        code = exc.code
    except Usage as exc:
        if exc.message:
            io.err(exc.message)
        sys.stderr.write(usage_text())
        code = 2
    except BrokenPipeError:
        # EPIPE on stdout: exit 0 quietly, and keep the interpreter's final flush
        # from complaining about the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    record_end(env, call_id, code, io)
    return code
