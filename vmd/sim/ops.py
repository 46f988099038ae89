"""Zone life-cycle steps: what boots, halts and vmadmd's timers do to a VM record.

The functions here run inside a locked `World` (vmd.sim.world). Sequences follow the
zone states of vmadm (docs/driver.md, vmadm fact 6): a halt is `running → shutting_down → down →
installed` (one `modify` event each, HALT_STEP simulated seconds apart when it
happens over time), a boot is `installed → ready → running`.
"""

from __future__ import annotations

import time

from vmd.sim import vmobj

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from vmd.sim.world import World

    Json = dict[str, Any]

# Gaps between the zone states of one halt, in simulated seconds.
HALT_STEP = 0.2
CRASH_EXIT_STATUS = -6
_HALT_PATH = {
    "running": ("shutting_down", "down", "installed"),
    "shutting_down": ("down", "installed"),
    "down": ("installed",),
    "ready": ("installed",),
}


def _rt(w: World, uuid: str) -> Json:
    rec = w.rec(uuid)
    assert rec is not None, uuid
    rt: Json = rec["rt"]
    return rt


def halted_now(w: World, uuid: str, exit_status: int) -> None:
    w.mutate(uuid, lambda rec: vmobj.halt(rec["rt"], time.time(), exit_status))


def halt_now(w: World, uuid: str, exit_status: int, *, honour_stuck: bool = True) -> None:
    """Walk the zone to `installed` at once (zoneadm halt, a crash)."""
    stuck = w.knobs(uuid)["stuck_state"] if honour_stuck else None
    was = _rt(w, uuid).get("zone_state")
    for state in _HALT_PATH.get(str(was), ()):
        if state == "installed":
            if was == "ready":
                w.set_rt(uuid, zone_state="installed")
            else:
                halted_now(w, uuid, exit_status)
        else:
            w.set_rt(uuid, zone_state=state)
        if state == stuck:
            return


def schedule_halt(
    w: World,
    uuid: str,
    delay: float,
    *,
    exit_status: int = 0,
    owned: bool = False,
    vmadmd: bool = False,
    label: str,
) -> None:
    """A halt that starts after `delay`, if the zone still runs the same boot then."""
    w.add_step(
        uuid,
        delay,
        "halt_seq",
        args={"exit_status": exit_status},
        expect={"zone_state": "running", "boot_id": _rt(w, uuid).get("boot_id", 0)},
        owned=owned,
        vmadmd=vmadmd,
        label=label,
    )


def begin_boot(w: World, uuid: str, *, seconds: float | None = None) -> None:
    """zoneadm boot: `ready` now, `running` after boot_seconds (unless the boot hangs)."""
    knobs = w.knobs(uuid)
    w.set_rt(uuid, zone_state="ready")
    if knobs["boot_hang"]:
        return
    w.add_step(
        uuid,
        float(knobs["boot_seconds"] if seconds is None else seconds),
        "booted",
        args={"crash": bool(knobs["boot_crash"])},
        expect={"zone_state": "ready", "boot_id": _rt(w, uuid).get("boot_id", 0)},
        label="boot",
    )


def reboot_now(w: World, uuid: str) -> None:
    """zoneadm reboot: `shutting_down → down` at once, then the boot (`ready → running`)."""
    w.set_rt(uuid, zone_state="shutting_down")
    w.set_rt(uuid, zone_state="down")
    begin_boot(w, uuid, seconds=reboot_seconds(w.knobs(uuid)))


def reboot_seconds(knobs: Json) -> float:
    value = knobs.get("reboot_seconds")
    return float(knobs["boot_seconds"] if value is None else value)


# -- the scheduled operations ---------------------------------------------------------


def _op_zone(w: World, step: Json) -> None:
    w.set_rt(step["vm"], zone_state=step["args"]["state"])


def _op_booted(w: World, step: Json) -> None:
    uuid = step["vm"]
    w.new_boot(uuid)
    if step["args"].get("crash"):
        schedule_halt(w, uuid, HALT_STEP, exit_status=CRASH_EXIT_STATUS, label="boot crash")


def _op_halt_seq(w: World, step: Json) -> None:
    uuid = step["vm"]
    stuck = w.knobs(uuid)["stuck_state"]
    w.set_rt(uuid, zone_state="shutting_down")
    if stuck == "shutting_down":
        return
    boot_id = _rt(w, uuid).get("boot_id", 0)
    w.add_step(
        uuid,
        HALT_STEP,
        "zone",
        args={"state": "down"},
        expect={"zone_state": "shutting_down", "boot_id": boot_id},
        label="halt: down",
    )
    if stuck == "down":
        return
    w.add_step(
        uuid,
        2 * HALT_STEP,
        "halted",
        args={"exit_status": step["args"].get("exit_status", 0)},
        expect={"zone_state": "down", "boot_id": boot_id},
        label="halt: installed",
    )


def _op_reboot_seq(w: World, step: Json) -> None:
    """An in-guest reboot over time: `shutting_down`, `down`, then a new boot."""
    uuid = step["vm"]
    w.set_rt(uuid, zone_state="shutting_down")
    boot_id = _rt(w, uuid).get("boot_id", 0)
    w.add_step(
        uuid,
        HALT_STEP,
        "zone",
        args={"state": "down"},
        expect={"zone_state": "shutting_down", "boot_id": boot_id},
        label="reboot: down",
    )
    w.add_step(
        uuid,
        2 * HALT_STEP,
        "reboot_boot",
        expect={"zone_state": "down", "boot_id": boot_id},
        label="reboot: boot",
    )


def _op_reboot_boot(w: World, step: Json) -> None:
    uuid = step["vm"]
    begin_boot(w, uuid, seconds=reboot_seconds(w.knobs(uuid)))


def _op_halted(w: World, step: Json) -> None:
    halted_now(w, step["vm"], int(step["args"].get("exit_status", 0)))


def _finish_transition(w: World, uuid: str, tr: Json) -> None:
    w.set_rt(uuid, transition=None)
    if tr.get("to") == "start":
        begin_boot(w, uuid, seconds=reboot_seconds(w.knobs(uuid)))


def _op_vmadmd_halted(w: World, step: Json) -> None:
    """vmadmd saw the KVM zone halt: it removes the stop transition (and restarts)."""
    uuid = step["vm"]
    rt = _rt(w, uuid)
    tr = rt.get("transition")
    if tr and tr.get("state") == "stopping" and rt.get("zone_state") == "installed":
        _finish_transition(w, uuid, tr)


def _op_vmadmd_expire(w: World, step: Json) -> None:
    """vmadmd's stop timer: still stopping past transition_expire → forced halt."""
    uuid = step["vm"]
    rt = _rt(w, uuid)
    tr = rt.get("transition")
    if not tr or tr.get("expire") != step["args"].get("expire"):
        return
    if rt.get("zone_state") != "installed":
        halt_now(w, uuid, 0)
        if _rt(w, uuid).get("zone_state") != "installed":
            return  # stuck: the transition stays, as the zone never halted
    _finish_transition(w, uuid, tr)


_OPS = {
    "zone": _op_zone,
    "booted": _op_booted,
    "halt_seq": _op_halt_seq,
    "halted": _op_halted,
    "reboot_seq": _op_reboot_seq,
    "reboot_boot": _op_reboot_boot,
    "vmadmd_halted": _op_vmadmd_halted,
    "vmadmd_expire": _op_vmadmd_expire,
}


def apply(w: World, step: Json) -> None:
    _OPS[step["op"]](w, step)
