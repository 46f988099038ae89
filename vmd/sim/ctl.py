"""`vmd-vmadm-ctl`: the simulated world around the node (docs/simulator.md).

Creates and destroys VMs, crashes guests, powers them off or reboots them from the
inside, sets behaviour knobs and injected failures, manages the ISO directory, shows
the calls made to `vmd-vmadm`, and moves simulated time. All changes go through the
same locked transactions (and emit the same journal events) as `vmd-vmadm`.
Bad input: one line on stderr, exit 2.
"""

from __future__ import annotations

import json
import os
import sys
import time

from vmd.sim import ctl_knobs, ops, store, vmobj
from vmd.sim.clock import read_rec, wait_for
from vmd.sim.env import EnvError, is_uuid, load_env, new_uuid
from vmd.sim.world import World

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from vmd.sim.env import Env

    Json = dict[str, Any]

PROG = "vmd-vmadm-ctl"
DEFAULT_OWNER = "930896af-bf8c-48d4-885c-6573a94b1853"


class CtlError(Exception):
    """Bad input: one line, exit 2."""


def _flags(args: list[str], names: tuple[str, ...], bools: tuple[str, ...] = ()) -> Json:
    """`--name value` / `--name=value` options; nothing positional allowed."""
    out: Json = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        name, eq, value = arg.partition("=")
        if name in bools:
            out[name[2:]] = True
            continue
        if name not in names:
            raise CtlError(f"unexpected argument {arg!r}")
        if not eq:
            if i >= len(args):
                raise CtlError(f"{name} needs a value")
            value = args[i]
            i += 1
        out[name[2:].replace("-", "_")] = value
    return out


def _one_uuid(args: list[str], cmd: str) -> tuple[str, list[str]]:
    if not args or not is_uuid(args[0]):
        raise CtlError(f"{cmd}: expected a VM uuid")
    return args[0], args[1:]


def _existing(w: World, uuid: str) -> Json:
    rec = w.rec(uuid)
    if rec is None:
        raise CtlError(f"no such VM: {uuid}")
    return rec


def _running(w: World, uuid: str, what: str) -> Json:
    rec = _existing(w, uuid)
    if rec["rt"].get("zone_state") != "running":
        zone_state = rec["rt"].get("zone_state")
        raise CtlError(f"{what}: VM {uuid} is not running (zone_state {zone_state})")
    return rec


def cmd_create(env: Env, args: list[str]) -> int:
    o = _flags(
        args,
        ("--brand", "--alias", "--hostname", "--owner", "--state", "--uuid", "--ostype", "--ram"),
        ("--docker",),
    )
    brand = o.get("brand")
    if brand not in vmobj.BRANDS:
        raise CtlError(f"--brand must be one of {', '.join(vmobj.BRANDS)}")
    state = o.get("state", "stopped")
    if state not in ("stopped", "running"):
        raise CtlError("--state must be stopped or running")
    uuid = o.get("uuid") or new_uuid()
    if not is_uuid(uuid):
        raise CtlError(f"--uuid is not a uuid: {uuid}")
    ostype = o.get("ostype")
    if ostype is not None and ostype not in ("windows", "linux"):
        raise CtlError("--ostype must be windows or linux")
    try:
        ram = int(o.get("ram", 1024))
    except ValueError:
        raise CtlError("--ram must be a whole number of MiB") from None
    if ram <= 0:
        raise CtlError("--ram must be positive")
    alias = o.get("alias", f"vm-{uuid[:8]}")  # --alias "": a VM without an alias
    with World(env) as w:
        if w.rec(uuid) is not None:
            raise CtlError(f"VM {uuid} exists already")
        sim = w.touch_sim()
        rec = vmobj.new_record(
            uuid=uuid,
            brand=brand,
            alias=alias,
            hostname=o.get("hostname") or f"{alias or uuid[:8]}.example.com",
            owner=o.get("owner") or DEFAULT_OWNER,
            server_uuid=sim.setdefault("server_uuid", new_uuid()),
            zonedid=w.counter("zonedid", 0),
            ram=ram,
            ostype=ostype,
            running=state == "running",
            pid=w.counter("pid", 4000),
            zoneid=w.counter("zoneid", 0),
        )
        if o.get("docker") and brand not in vmobj.HVM_BRANDS:
            rec["config"]["docker"] = True
        # The zone's directory on this host (a real node: /zones/<uuid>): the driver puts
        # the ISO placeholders under <zonepath>/root, where vmadm's start looks for them.
        rec["config"]["zonepath"] = env.path("zones", uuid)
        os.makedirs(env.path("zones", uuid, "root"), exist_ok=True)
        w.create(rec)
    print(uuid)
    return 0


def cmd_destroy(env: Env, args: list[str]) -> int:
    uuid, rest = _one_uuid(args, "destroy")
    _flags(rest, ())
    with World(env) as w:
        _existing(w, uuid)
        w.destroy(uuid)
    import shutil

    shutil.rmtree(env.path("zones", uuid), ignore_errors=True)
    return 0


def cmd_crash(env: Env, args: list[str]) -> int:
    uuid, rest = _one_uuid(args, "crash")
    o = _flags(rest, ("--exit-status",))
    try:
        status = int(o.get("exit_status", ops.CRASH_EXIT_STATUS))
    except ValueError:
        raise CtlError("--exit-status must be an integer") from None
    if status == 0:
        raise CtlError("--exit-status of a crash must not be 0 (use guest-poweroff)")
    with World(env) as w:
        _running(w, uuid, "crash")
        ops.halt_now(w, uuid, status, honour_stuck=False)
    return 0


def cmd_guest_poweroff(env: Env, args: list[str]) -> int:
    uuid, rest = _one_uuid(args, "guest-poweroff")
    _flags(rest, ())
    with World(env) as w:
        _running(w, uuid, "guest-poweroff")
        ops.halt_now(w, uuid, 0, honour_stuck=False)
    return 0


def cmd_guest_reboot(env: Env, args: list[str]) -> int:
    uuid, rest = _one_uuid(args, "guest-reboot")
    o = _flags(rest, (), ("--wait",))
    with World(env) as w:
        rec = _running(w, uuid, "guest-reboot")
        old = int(rec["rt"].get("boot_id", 0))
        ops.reboot_now(w, uuid)
    if o.get("wait"):

        def up(r: Json) -> bool:
            return r["rt"].get("zone_state") == "running" and int(r["rt"].get("boot_id", 0)) > old

        if wait_for(env, uuid, up, None) != "ok":
            raise CtlError(f"guest-reboot: VM {uuid} vanished")
    return 0


def cmd_fault(env: Env, args: list[str]) -> int:
    if not args:
        raise CtlError("fault: expected a VM uuid or 'global', then key=value ...")
    target, pairs = args[0], args[1:]
    if target != "global" and not is_uuid(target):
        raise CtlError("fault: expected a VM uuid or 'global'")
    if not pairs:
        raise CtlError("fault: expected key=value ...")
    changes = ctl_knobs.parse_knobs(pairs, global_target=target == "global")
    with World(env) as w:
        if target == "global":
            holder = w.touch_sim()
        else:
            _existing(w, target)
            holder = w.touch_vm_sim(target)
        knobs = holder.setdefault("knobs", {})
        for key, value in changes.items():
            if value is None:
                knobs.pop(key, None)
            else:
                knobs[key] = value
    return 0


def cmd_set(env: Env, args: list[str]) -> int:
    uuid, pairs = _one_uuid(args, "set")
    if not pairs:
        raise CtlError("set: expected key=value ...")
    values = ctl_knobs.parse_set(pairs)
    with World(env) as w:
        _existing(w, uuid)
        pid = w.counter("pid", 4000)
        zoneid = w.counter("zoneid", 0)
        w.mutate(uuid, lambda rec: ctl_knobs.apply_set(rec, values, pid, zoneid))
    return 0


def _iso_name(args: list[str], cmd: str) -> str:
    if len(args) != 1:
        raise CtlError(f"{cmd}: expected one ISO file name")
    name = args[0]
    if not name or "/" in name or ".." in name or name == "." or "\0" in name:
        raise CtlError(f"{cmd}: invalid ISO name {name!r} (no '/' or '..')")
    return name


def cmd_iso_add(env: Env, args: list[str]) -> int:
    path = env.path("iso", _iso_name(args, "iso-add"))
    with open(path, "ab"):
        pass
    return 0


def cmd_iso_remove(env: Env, args: list[str]) -> int:
    name = _iso_name(args, "iso-remove")
    try:
        os.unlink(env.path("iso", name))
    except FileNotFoundError:
        raise CtlError(f"iso-remove: no such ISO: {name}") from None
    return 0


def cmd_iso_list(env: Env, args: list[str]) -> int:
    _flags(args, ())
    for name in sorted(os.listdir(env.path("iso"))):
        print(name)
    return 0


def cmd_calls(env: Env, args: list[str]) -> int:
    req_id = "--req-id" in args
    args = [a for a in args if a != "--req-id"]
    if len(args) > 1 or (args and not is_uuid(args[0])):
        raise CtlError("calls: expected [--req-id] and at most one VM uuid")
    for line in ctl_knobs.call_lines(env, args[0] if args else None, req_id=req_id):
        print(line)
    return 0


def cmd_settle(env: Env, args: list[str]) -> int:
    _flags(args, ())
    with World(env) as w:
        w.settle()
    return 0


def cmd_advance(env: Env, args: list[str]) -> int:
    if len(args) != 1:
        raise CtlError("advance: expected a number of simulated seconds")
    try:
        seconds = float(args[0])
    except ValueError:
        raise CtlError("advance: expected a number of simulated seconds") from None
    if not seconds >= 0:
        raise CtlError("advance: seconds must be >= 0")
    with World(env) as w:
        w.shift(seconds)
        w.settle()
    return 0


def cmd_events_kill(env: Env, args: list[str]) -> int:
    _flags(args, ())
    with World(env) as w:
        sim = w.touch_sim()
        sim["vminfod_epoch"] = int(sim.get("vminfod_epoch", 0)) + 1
    return 0


def cmd_last_start(env: Env, args: list[str]) -> int:
    uuid, rest = _one_uuid(args, "last-start")
    _flags(rest, ())
    if read_rec(env, uuid) is None:
        raise CtlError(f"no such VM: {uuid}")
    sim = store.read_json(store.vm_sim_path(env, uuid), {}) or {}
    print(json.dumps(sim.get("last_start"), indent=2))
    return 0


def cmd_wait(env: Env, args: list[str]) -> int:
    uuid, rest = _one_uuid(args, "wait")
    if not rest:
        raise CtlError("wait: expected a state")
    state = rest[0]
    o = _flags(rest[1:], ("--timeout",))
    try:
        timeout = float(o.get("timeout", 60))
    except ValueError:
        raise CtlError("wait: --timeout must be a number of real seconds") from None
    deadline = time.time() + timeout
    while True:
        outcome = wait_for(env, uuid, lambda r: vmobj.state_of(r) == state, 0)
        if outcome == "ok":
            return 0
        if outcome == "gone":
            raise CtlError(f"no such VM: {uuid}")
        if time.time() >= deadline:
            print(f"{PROG}: timed out waiting for {uuid} to be {state}", file=sys.stderr)
            return 1
        time.sleep(env.poll)


def cmd_vms(env: Env, args: list[str]) -> int:
    _flags(args, ())
    with World(env) as w:
        w.settle()
        recs = [w.rec(u) for u in w.uuids()]
    for rec in recs:
        if rec is not None:
            c = rec["config"]
            state = vmobj.state_of(rec)
            print(f"{c['uuid']}  {c['brand']:<14}  {state:<13}  {c.get('alias') or '-'}")
    return 0


def cmd_dump(env: Env, args: list[str]) -> int:
    _flags(args, ())
    print(store.dumps(ctl_knobs.dump(env), indent=2))
    return 0


COMMANDS: dict[str, Callable[[Env, list[str]], int]] = {
    "create": cmd_create,
    "destroy": cmd_destroy,
    "crash": cmd_crash,
    "guest-poweroff": cmd_guest_poweroff,
    "guest-reboot": cmd_guest_reboot,
    "fault": cmd_fault,
    "set": cmd_set,
    "iso-add": cmd_iso_add,
    "iso-remove": cmd_iso_remove,
    "iso-list": cmd_iso_list,
    "calls": cmd_calls,
    "settle": cmd_settle,
    "advance": cmd_advance,
    "events-kill": cmd_events_kill,
    "vminfod-restart": cmd_events_kill,
    "last-start": cmd_last_start,
    "wait": cmd_wait,
    "vms": cmd_vms,
    "dump": cmd_dump,
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        usage = f"usage: {PROG} <command> [args]; commands: {', '.join(COMMANDS)}"
        print(usage, file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    fn = COMMANDS.get(args[0])
    if fn is None:
        known = ", ".join(COMMANDS)
        print(f"{PROG}: unknown command {args[0]!r} (one of: {known})", file=sys.stderr)
        return 2
    try:
        env = load_env(PROG)
        return fn(env, args[1:])
    except (CtlError, EnvError, ctl_knobs.KnobError) as exc:
        msg = str(exc)
        print(msg if msg.startswith(PROG) else f"{PROG}: {msg}", file=sys.stderr)
        return 2
