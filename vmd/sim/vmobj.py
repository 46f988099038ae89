"""VM records and the VM objects vmadm shows (docs/driver.md vmadm fact 6; docs/simulator.md).

A stored record is `{"config": {...}, "rt": {...}}`: `config` holds what the zone's
configuration holds (alias, brand, autoboot, nics, disks, ...), `rt` the runtime core
(zone_state, transition, failed, provisioning, pid, boot/exit data, last_modified,
and the sim-only `boot_id` that counts boots). `render()` derives the VM object with
vmadm's state rules (docs/driver.md, vmadm fact 6), which is what `get`, `lookup`, `list`
and events show.
"""

from __future__ import annotations

import time

from vmd.sim.env import iso

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Json = dict[str, Any]

HVM_BRANDS = ("kvm", "bhyve")
OS_BRANDS = ("joyent", "joyent-minimal", "lx", "builder")
BRANDS = ("kvm", "bhyve", "joyent", "joyent-minimal", "lx")
LIST_TYPE = {"kvm": "KVM", "bhyve": "BHYV", "lx": "LX"}

# Runtime keys of a record (everything else a `set` touches is configuration).
RT_KEYS = (
    "zone_state",
    "transition",
    "provisioning",
    "failed",
    "pid",
    "zoneid",
    "boot_timestamp",
    "exit_status",
    "exit_timestamp",
    "last_modified",
    "boot_id",
)
RUNNING_ONLY = ("pid", "zoneid", "boot_timestamp")

DEFAULT_KNOBS: Json = {
    "guest_honors_shutdown": True,
    "shutdown_seconds": 2.0,
    "boot_seconds": 1.0,
    "reboot_seconds": None,  # None: same as boot_seconds
    "boot_crash": False,
    "boot_hang": False,
    "stuck_state": None,
    "vmadmd_down": False,
    "fail_next": [],
    "hang_next": [],
    "delay_next": [],
    "events_die_after": None,
}


def is_hvm(rec: Json) -> bool:
    return rec["config"].get("brand") in HVM_BRANDS


def is_docker(rec: Json) -> bool:
    return bool(rec["config"].get("docker")) and not is_hvm(rec)


def _mac(uuid: str) -> str:
    h = uuid.replace("-", "")[-10:]
    return "90:b8:d0:" + ":".join(h[i : i + 2] for i in range(4, 10, 2))


def new_record(
    *,
    uuid: str,
    brand: str,
    alias: str,
    hostname: str,
    owner: str,
    server_uuid: str,
    zonedid: int,
    ram: int,
    ostype: str | None,
    running: bool,
    pid: int,
    zoneid: int,
) -> Json:
    """A realistic fresh VM (docs/simulator.md); `running` also gives it a first boot."""
    hvm = brand in HVM_BRANDS
    t = time.time()
    ip_last = int(uuid[-2:], 16) % 250 + 2
    nic: Json = {
        "interface": "net0",
        "mac": _mac(uuid),
        "nic_tag": "admin",
        "ip": f"10.0.0.{ip_last}",
        "ips": [f"10.0.0.{ip_last}/24"],
        "netmask": "255.255.255.0",
        "gateway": "10.0.0.1",
        "gateways": ["10.0.0.1"],
        "primary": True,
    }
    config: Json = {
        "uuid": uuid,
        "zonename": uuid,
        "alias": alias,
        "hostname": hostname,
        "brand": brand,
        "owner_uuid": owner,
        "server_uuid": server_uuid,
        "billing_id": "00000000-0000-0000-0000-000000000000",
        "autoboot": running,
        "zonepath": f"/zones/{uuid}",
        "zfs_filesystem": f"zones/{uuid}",
        "zpool": "zones",
        "zonedid": zonedid,
        "create_timestamp": iso(t),
        "hvm": hvm,
        "max_physical_memory": ram + 1024 if hvm else ram,
        "max_swap": (ram + 1024 if hvm else ram) * 2,
        "max_locked_memory": ram + 1024 if hvm else ram,
        "cpu_shares": 100,
        "quota": 10,
        "dns_domain": "local",
        "resolvers": [],
        "firewall_enabled": False,
        "nics": [nic],
        "snapshots": [],
        "tags": {},
        "customer_metadata": {},
        "internal_metadata": {"ostype": ostype} if ostype else {},
    }
    if not alias:
        del config["alias"]
    if hvm:
        nic["model"] = "virtio"
        config["ram"] = ram
        config["vcpus"] = 1
        config["disks"] = [
            {
                "path": f"/dev/zvol/rdsk/zones/{uuid}-disk0",
                "zfs_filesystem": f"zones/{uuid}-disk0",
                "size": 10240,
                "model": "virtio",
                "media": "disk",
                "boot": True,
            }
        ]
    else:
        config["image_uuid"] = "e75c9d82-3156-11ea-9220-c7a6bb9f41b6"
    rt: Json = {"zone_state": "installed", "boot_id": 0, "last_modified": iso(t)}
    if running:
        boot(rt, t, pid, zoneid)
    return {"config": config, "rt": rt}


def boot(rt: Json, t: float, pid: int, zoneid: int) -> None:
    """The zone reaches `running`: a new boot with fresh pid, zoneid and timestamp."""
    rt["zone_state"] = "running"
    rt["boot_id"] = int(rt.get("boot_id", 0)) + 1
    rt["pid"] = pid
    rt["zoneid"] = zoneid
    rt["boot_timestamp"] = iso(t)
    rt.pop("exit_status", None)
    rt.pop("exit_timestamp", None)


def halt(rt: Json, t: float, exit_status: int) -> None:
    """The zone reaches `installed` after running: exit data replaces boot data."""
    rt["zone_state"] = "installed"
    for key in RUNNING_ONLY:
        rt.pop(key, None)
    rt["exit_status"] = exit_status
    rt["exit_timestamp"] = iso(t)


def state_of(rec: Json) -> str:
    """vmadm's `state` from the runtime core (docs/driver.md, vmadm fact 6)."""
    rt = rec["rt"]
    zone_state = rt.get("zone_state", "installed")
    tr = rt.get("transition")
    if tr:
        state = str(tr["state"])
    elif zone_state == "installed":
        state = "stopped"
    else:
        state = str(zone_state)
    if state == "stopped" and rt.get("provisioning"):
        state = "provisioning"
    if rt.get("failed"):
        state = "failed"
    return state


def render(rec: Json) -> Json:
    """The VM object as `vmadm get` prints it (no fake fields)."""
    rt = rec["rt"]
    obj: Json = dict(rec["config"])
    zone_state = rt.get("zone_state", "installed")
    obj["state"] = state_of(rec)
    obj["zone_state"] = zone_state
    tr = rt.get("transition")
    if tr:
        obj["transition_to"] = tr["to"]
        obj["transition_expire"] = tr["expire"]
    if zone_state == "running":
        for key in RUNNING_ONLY:
            if key in rt:
                obj[key] = rt[key]
    else:
        for key in ("exit_status", "exit_timestamp"):
            if key in rt:
                obj[key] = rt[key]
    obj["last_modified"] = rt.get("last_modified")
    return obj


def add_fake_fields(obj: Json) -> Json:
    """vmadm's list transform: `type` and, for non-HVM VMs, `ram`."""
    out = dict(obj)
    brand = out.get("brand")
    out["type"] = LIST_TYPE.get(str(brand), "OS")
    if brand not in HVM_BRANDS:
        out["ram"] = out.get("max_physical_memory")
    return out


def parse_transition(value: str) -> Json:
    """`<state>:<to>:<expire-ms>` as stored in zonecfg."""
    parts = value.split(":")
    if len(parts) != 3 or not parts[0]:
        raise ValueError("transition must look like <state>:<to>:<expire-ms>")
    return {"state": parts[0], "to": parts[1], "expire": int(parts[2] or 0)}


def next_counter(sim: Json, name: str, start: int) -> int:
    counters = sim.setdefault("counters", {})
    value = int(counters.get(name, start)) + 1
    counters[name] = value
    return value
