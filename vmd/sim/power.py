"""`vmadm start`, `stop` and `reboot`: checks, scheduled effects, and blocking waits.

Texts, exit codes and the order of checks are vmadm's (docs/driver.md, vmadm facts 2-5;
docs/simulator.md). Each command first does its checks and schedules its effects in one locked
transaction, then polls (settling the world) until its completion predicate holds or
the real tool's failsafe expires. Work the real `vmadm` process does itself (the
bhyve/OS forced halt, the bhyve restart of a reboot, `autoboot=true` after a start)
is owned by this process or done by it directly, so killing it cancels that work.
"""

from __future__ import annotations

import os
import time

from vmd.sim import ops, store, vmobj
from vmd.sim.clock import settle_if_due, wait_for
from vmd.sim.cmdio import Fail
from vmd.sim.env import iso
from vmd.sim.world import World

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from vmd.sim.cmdio import Io
    from vmd.sim.env import Env

    Json = dict[str, Any]

PROVISION_TIMEOUT = 300.0  # vminfod watch of start and stop
STOP_TIMEOUT = 60.0  # OS zones: graceful stop before zoneadm halt; also stop -F's watch
HVM_STOP_DEFAULT = 180.0
DOCKER_STOP_DEFAULT = 10.0
REBOOT_WAIT = 180.0
BHYVE_REBOOT_GRACE = 10.0
DISK_MODELS = ("virtio", "scsi", "ide")
VMADMD_REFUSED = 'Unable to post "{what}" to vmadmd: connect ECONNREFUSED 127.0.0.1:8080'


def _watch_timeout(what: str, uuid: str) -> str:
    return f'first of 1 error: vminfod watchForChanges "VM.js {what} ({uuid})" timeout exceeded'


def _zone_root(env: Env, rec: Json) -> str:
    return env.path("zones", rec["config"]["uuid"], "root")


def _disk_exists(env: Env, rec: Json, path: str) -> bool:
    """vmadm's check of an extra disk or CD-ROM: a disk of the VM, or a path under the zone's
    root as the global zone sees it (docs/driver.md, vmadm fact 3). Like the real one it does
    not look through the zone's lofs mounts (they exist only while the zone runs): an ISO in
    the node's ISO directory passes only once a placeholder `<zone root>/iso/<name>` exists."""
    if any(d.get("path") == path for d in rec["config"].get("disks", [])):
        return True
    return os.path.exists(os.path.join(_zone_root(env, rec), path.lstrip("/")))


def _image(env: Env, rec: Json, path: str) -> str | None:
    """The file the guest reads for `path` once the zone runs: through the zone's lofs mount
    covering `path` (the longest), else the file under the zone root; None if missing."""
    mounts = sorted(
        (
            (str(fs.get("target") or "").rstrip("/"), str(fs.get("source") or ""))
            for fs in rec["config"].get("filesystems", [])
            if fs.get("type") == "lofs"
        ),
        key=lambda m: -len(m[0]),
    )
    host = os.path.join(_zone_root(env, rec), path.lstrip("/"))
    for target, source in mounts:
        if target and path.startswith(target + "/"):
            host = os.path.join(source, path[len(target) + 1 :])
            break
    return host if os.path.isfile(host) else None


def _last_start(env: Env, rec: Json, extra: Json) -> Json:
    """What this boot got, for assertions: KVM's QEMU boot order and drives, bhyve's CDs,
    and for each CD the `image` the guest reads (`_image`)."""
    config = rec["config"]
    disks = extra.get("disks", [])
    cdroms = [{"path": d["path"], "model": d["model"]} for d in disks if d["media"] == "cdrom"]
    if config.get("brand") == "bhyve":
        # start options have no effect on bhyve: CDs come from bhyve_extra_opts
        # ("-s 3:0,ahci-cd,/iso/x.iso"), as Danube Cloud and vmd's agent set them.
        opts = str(config.get("bhyve_extra_opts") or "").split()
        cdroms = [
            {"path": o.split(",", 2)[2], "model": "ahci-cd"}
            for o in opts
            if o.count(",") >= 2 and o.split(",")[1] == "ahci-cd"
        ]
    for cd in cdroms:
        cd["image"] = _image(env, rec, cd["path"])
    return {
        "at": iso(time.time()),
        "brand": config.get("brand"),
        "options_effective": config.get("brand") == "kvm",
        "boot": extra.get("boot") or config.get("boot") or "order=cd",
        "cdroms": cdroms,
        "disks": [{"path": d["path"], "model": d["model"]} for d in disks if d["media"] == "disk"],
        "bhyve_extra_opts": config.get("bhyve_extra_opts"),
    }


def start(env: Env, io: Io, uuid: str, extra: Json) -> int:
    """Block until the VM is running (or stopped again); exit 0 on a running VM."""
    with World(env) as w:
        w.settle()
        rec = w.rec(uuid)
        if rec is None:
            raise Fail(f"Unable to start VM {uuid}: bad statusCode: 404")
        state = vmobj.state_of(rec)
        if state == "running":
            io.err(f"Unable to start VM {uuid}: VM {uuid} is already 'running'")
            return 0
        zone_state = rec["rt"].get("zone_state")
        if not (state == "stopped" or (state == "provisioning" and zone_state == "installed")):
            raise Fail(
                f"Unable to start VM {uuid}: "
                f'Cannot start vm from state "{state}", must be "stopped".'
            )
        brand = rec["config"].get("brand")
        disks = extra.get("disks", [])
        if vmobj.is_hvm(rec):
            for d in disks:
                if not _disk_exists(env, rec, d["path"]):
                    raise Fail(f"Unable to start VM {uuid}: Cannot find disk: {d['path']}")
                if d["model"] not in DISK_MODELS:
                    raise Fail(
                        f'Unable to start VM {uuid}: "{d["model"]}" is not a valid disk model'
                        f" for {brand} brand. Valid are: {','.join(DISK_MODELS)}"
                    )
        w.touch_vm_sim(uuid)["last_start"] = _last_start(env, rec, extra)
        ops.begin_boot(w, uuid)
    outcome = wait_for(
        env, uuid, lambda r: vmobj.state_of(r) in ("running", "stopped"), PROVISION_TIMEOUT
    )
    if outcome == "timeout":
        raise Fail(f"Unable to start VM {uuid}: {_watch_timeout('startZone', uuid)}")
    if outcome == "gone":
        raise Fail(f"Unable to start VM {uuid}: bad statusCode: 404")
    # vmadm itself marks the VM for autoboot once the zone is up.
    with World(env) as w:
        if w.rec(uuid) is not None:
            w.set_config(uuid, autoboot=True)
    io.err(f"Successfully started VM {uuid}")
    return 0


def _stopped(rec: Json) -> bool:
    if vmobj.state_of(rec) != "stopped":
        return False
    return vmobj.is_hvm(rec) or ("exit_status" in rec["rt"] and "exit_timestamp" in rec["rt"])


def _my_steps_pending(env: Env, uuid: str) -> bool:
    me = os.getpid()
    sched = store.read_json(env.path(store.SCHEDULE), []) or []
    return any(s["vm"] == uuid and s.get("owner", {}).get("pid") == me for s in sched)


def _wait_stopped(env: Env, uuid: str) -> None:
    outcome = wait_for(env, uuid, _stopped, PROVISION_TIMEOUT)
    if outcome == "timeout":
        # vasync.parallel: the failed watch is reported only once this process's own
        # stop branch (the bhyve/OS forced halt timer) has finished too.
        while _my_steps_pending(env, uuid):
            settle_if_due(env)
            time.sleep(env.poll)
        raise Fail(_watch_timeout("VM.stop", uuid))
    if outcome == "gone":
        raise Fail(f"VM {uuid} not found")


def _begin_graceful_stop(w: World, uuid: str, rec: Json, timeout: float | None, to: str) -> str:
    """Schedule the brand's graceful stop; returns a deferred error message or ""."""
    knobs = w.knobs(uuid)
    brand = rec["config"].get("brand")
    honours = bool(knobs["guest_honors_shutdown"])
    grace = float(knobs["shutdown_seconds"])
    if brand == "kvm":
        deadline = timeout or HVM_STOP_DEFAULT
        expire = int((time.time() + w.env.seconds(deadline)) * 1000)
        w.set_rt(uuid, transition={"state": "stopping", "to": to, "expire": expire})
        w.add_step(
            uuid, deadline, "vmadmd_expire", args={"expire": expire}, vmadmd=True, label="vmadmd"
        )
        if knobs["vmadmd_down"]:
            return "first of 1 error: " + VMADMD_REFUSED.format(what="stop")
        if honours:
            ops.schedule_halt(w, uuid, grace, label="guest ACPI shutdown")
        return ""
    if vmobj.is_hvm(rec):  # bhyve
        deadline = timeout or HVM_STOP_DEFAULT
        exit_status = 0
    elif vmobj.is_docker(rec):
        deadline = timeout or DOCKER_STOP_DEFAULT
        exit_status = -9
    else:
        deadline = STOP_TIMEOUT
        exit_status = 0
    if honours:
        ops.schedule_halt(w, uuid, grace, label="guest shutdown")
    ops.schedule_halt(
        w, uuid, deadline, exit_status=exit_status, owned=True, label="forced halt (vmadm)"
    )
    return ""


def stop(env: Env, io: Io, uuid: str, *, force: bool, timeout: float | None) -> int:
    if force:
        return _force_stop(env, io, uuid)
    with World(env) as w:
        w.settle()
        rec = w.rec(uuid)
        if rec is None:
            raise Fail(f"VM {uuid} not found")
        w.set_config(uuid, autoboot=False)
        state = vmobj.state_of(rec)
        if state != "running":
            io.err(f"VM {uuid} is already not 'running' (currently: {state})")
            return 0
        if not vmobj.is_hvm(rec) and not vmobj.is_docker(rec) and timeout is not None:
            raise_after = (
                "first of 1 error: Timeout option is only supported for bhyve, KVM and docker"
                " containers."
            )
        else:
            raise_after = _begin_graceful_stop(w, uuid, rec, timeout, "stopped")
    if raise_after:  # after the commit: autoboot and the transition stay set
        raise Fail(raise_after)
    _wait_stopped(env, uuid)
    io.err(f"Successfully completed stop for VM {uuid}")
    return 0


def _force_stop(env: Env, io: Io, uuid: str) -> int:
    with World(env) as w:
        w.settle()
        rec = w.rec(uuid)
        if rec is None:
            raise Fail("bad statusCode: 404")
        if rec["rt"].get("zone_state") == "installed":
            state = vmobj.state_of(rec)
            raise Fail(f"first of 1 error: VM {uuid} is already not 'running' (currently: {state})")
        ops.halt_now(w, uuid, 0)
    outcome = wait_for(env, uuid, lambda r: r["rt"].get("zone_state") == "installed", STOP_TIMEOUT)
    if outcome == "timeout":
        raise Fail(_watch_timeout("VM.halt", uuid))
    if outcome == "gone":
        raise Fail("bad statusCode: 404")
    with World(env) as w:
        if w.rec(uuid) is not None:

            def fn(rec: Json) -> None:
                rec["config"]["autoboot"] = False
                rec["rt"].pop("transition", None)

            w.mutate(uuid, fn)
    io.err(f"Successfully completed stop for VM {uuid}")
    return 0


def _boot_id(rec: Json) -> int:
    return int(rec["rt"].get("boot_id", 0))


def _check(outcome: str, timeout_message: str) -> None:
    if outcome == "timeout":
        raise Fail(timeout_message)
    if outcome == "gone":
        raise Fail("bad statusCode: 404")


def _begin_reboot(w: World, uuid: str, rec: Json, state: str) -> tuple[str, str]:
    """Schedule a graceful reboot; returns (how to wait, deferred error)."""
    knobs = w.knobs(uuid)
    if state != "running":  # a stopped docker container is simply started
        ops.begin_boot(w, uuid)
        return "boot", ""
    if rec["config"].get("brand") == "kvm":
        # VM.stop with transition_to "start": vmadmd restarts the zone once it halted.
        return "kvm", _begin_graceful_stop(w, uuid, rec, None, "start")
    if vmobj.is_hvm(rec) or vmobj.is_docker(rec):
        # stop with a 10 s grace, then start, both driven by this vmadm process
        return "restart", _begin_graceful_stop(w, uuid, rec, BHYVE_REBOOT_GRACE, "stopped")
    if knobs["guest_honors_shutdown"]:  # zlogin shutdown -i 6: the guest reboots itself
        w.add_step(
            uuid,
            float(knobs["shutdown_seconds"]),
            "reboot_seq",
            expect={"zone_state": "running", "boot_id": _boot_id(rec)},
            label="guest reboot",
        )
    return "boot", ""


def reboot(env: Env, io: Io, uuid: str, *, force: bool) -> int:
    with World(env) as w:
        w.settle()
        rec = w.rec(uuid)
        if rec is None:
            raise Fail("bad statusCode: 404")
        state = vmobj.state_of(rec)
        if force:
            return _reset(w, io, uuid, rec, state)
        if state != "running" and not (vmobj.is_docker(rec) and state == "stopped"):
            raise Fail(f'Cannot reboot vm from state "{state}", must be "running"')
        old_boot = _boot_id(rec)
        how, error = _begin_reboot(w, uuid, rec, state)
    if error:
        raise Fail(error)

    def rebooted(r: Json) -> bool:
        return r["rt"].get("zone_state") == "running" and _boot_id(r) > old_boot

    def left(r: Json) -> bool:
        return r["rt"].get("zone_state") != "running" or _boot_id(r) != old_boot

    if how == "kvm":
        _check(wait_for(env, uuid, left, PROVISION_TIMEOUT), _watch_timeout("VM.stop", uuid))
    elif how == "restart":
        _wait_stopped(env, uuid)
        with World(env) as w:
            if w.rec(uuid) is not None:
                ops.begin_boot(w, uuid, seconds=ops.reboot_seconds(w.knobs(uuid)))
        _check(wait_for(env, uuid, rebooted, PROVISION_TIMEOUT), _watch_timeout("startZone", uuid))
    _check(wait_for(env, uuid, rebooted, REBOOT_WAIT), "timed out waiting for zone to reboot")
    io.err(f"Successfully completed reboot for VM {uuid}")
    return 0


def _reset(w: World, io: Io, uuid: str, rec: Json, state: str) -> int:
    """reboot -F: QMP system_reset for KVM (the zone never leaves running), else zoneadm reboot."""
    if state != "running":
        raise Fail(f'Cannot reset vm from state "{state}", must be "running".')
    knobs = w.knobs(uuid)
    if rec["config"].get("brand") == "kvm":
        if knobs["vmadmd_down"]:
            raise Fail("first of 1 error: " + VMADMD_REFUSED.format(what="reset"))
        vm_sim = w.touch_vm_sim(uuid)
        vm_sim["reset_count"] = int(vm_sim.get("reset_count", 0)) + 1
    else:
        ops.reboot_now(w, uuid)
    io.err(f"Successfully completed reboot for VM {uuid}")
    return 0
