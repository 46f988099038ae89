"""Pure builders of vmadm argument lists, one function per command, and their time limits.

Every function here validates its inputs first (`validate`) and returns the arguments that
follow the configured vmadm executable (e.g. `["start", uuid, "order=c,once=d", ...]`).
Keeping them pure makes the per-brand rules table-testable without running anything.

Per-brand rules (docs/driver.md, vmadm facts 2-5):

- start, KVM: no options for a plain start (the VM's own `boot` order applies); with an ISO
  `order=c,once=d cdrom=/iso/<name>,ide` (boot from CD once) or `order=d cdrom=...` (CD
  first on every boot of this run), plus `cdrom=/iso/<name2>,ide` for a second ISO. `once`
  is always inside the single `order=` token (a separate `once=d` is a vmadm usage error).
- start, bhyve: vmadm's start options have no effect, so the ISO goes into
  `bhyve_extra_opts` (`-s 3:0,ahci-cd,/iso/<name>`, `-s 3:1,...` for the second) for the
  duration of the start (see `Vmadm.start`); the start itself has no options.
- start, OS zones (joyent, joyent-minimal, lx): options are ignored by vmadm, so none are
  passed; an ISO request is ignored.
- stop: `-F` for force (then `-t` is meaningless and not passed); `-t <n>` only for HVM
  brands and only when n > 0 (0 = vmadm's own default); never `-t` for OS zones, where
  vmadm rejects it.
- reboot: only `-F` (vmadm ignores `-t` on reboot).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import validate
from .errors import ValidationError

ISO_MOUNT = "/iso"  # where the ISO directory appears inside a zone (lofs mount, docs/driver.md)

# Fields of `vmadm lookup -j -o ...`: what vmd needs to know about each VM (inventory,
# power state, Windows detection, disk resize and snapshot checks of docs/fsm.md §6).
LISTING_FIELDS = (
    "uuid",
    "state",
    "zone_state",
    "alias",
    "hostname",
    "brand",
    "owner_uuid",
    "internal_metadata",
    "tags",
    "last_modified",
    "snapshots",
    "disks",
)

# vmadm's own graceful-stop deadlines and its failsafe watch on stop/start (docs/driver.md,
# vmadm facts 4-5).
HVM_STOP_DEFAULT = 180
ZONE_STOP_DEFAULT = 60
VMADM_WATCH_FAILSAFE = 300


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long the driver lets each kind of command run before killing it (seconds).

    They exceed vmadm's own waits (docs/driver.md, vmadm facts 4-5) so that vmadm, not the
    driver, decides the outcome in the normal case; the daemon's task deadlines still bound
    the task.
    """

    query: float = 30.0  # get, lookup, ls
    start: float = 330.0  # vmadm's 300 s watch + margin
    stop_margin: float = 150.0  # added to the graceful deadline (capped at 300 s)
    force: float = 90.0  # stop -F / reboot -F: 60 s halt watch + margin
    reboot: float = 420.0  # graceful stop (<= 180 s) + 180 s wait for running + margin
    update: float = 120.0  # vminfod waits of 60 s + margin

    def stop(self, brand: str, *, force: bool, timeout: int | None) -> float:
        if force:
            return self.force
        if brand in validate.HVM_BRANDS:
            deadline = timeout if timeout else HVM_STOP_DEFAULT
        else:
            deadline = ZONE_STOP_DEFAULT
        return min(deadline, VMADM_WATCH_FAILSAFE) + self.stop_margin


@dataclass(frozen=True, slots=True)
class PowerCall:
    """One start or stop of one VM: what `Backend.start` and `Backend.stop` take.

    One value instead of the same keyword list written out in every backend (`Vmadm`,
    `MemoryNode`, `Metered`) and in the `Backend` protocol: a wrapper passes it on whole.
    The ISO fields are read by a start only, `force` and `timeout` by a stop only; values
    are checked where they reach a command line (`start_args`, `stop_args`), not here.
    A reboot takes no brand (neither its argv nor its time limit depends on one, and the
    agent does not look it up for a plain reboot), so it keeps its own three keywords.
    """

    uuid: str
    brand: str
    hostname: str | None = None
    run_timeout: float | None = None  # overrides the command's time limit (`Timeouts`)
    cdimage: str | None = None  # start
    cdimage_once: bool = True  # start
    cdimage2: str | None = None  # start
    force: bool = False  # stop
    timeout: int | None = None  # stop: vmadm's `-t` (HVM brands)


def iso_path(name: str) -> str:
    return f"{ISO_MOUNT}/{validate.iso_name(name)}"


def start_args(
    uuid: str,
    *,
    brand: str,
    cdimage: str | None = None,
    cdimage_once: bool = True,
    cdimage2: str | None = None,
) -> list[str]:
    """`vmadm start` arguments (see the module docstring for the per-brand rules)."""
    vm = validate.uuid(uuid)
    kind = validate.brand(brand)
    _check_isos(cdimage, cdimage2)
    args = ["start", vm]
    if kind == "kvm" and cdimage is not None:
        args.append("order=c,once=d" if cdimage_once else "order=d")
        args.append(f"cdrom={iso_path(cdimage)},ide")
        if cdimage2 is not None:
            args.append(f"cdrom={iso_path(cdimage2)},ide")
    return args


def _check_isos(cdimage: str | None, cdimage2: str | None) -> None:
    if cdimage is not None:
        validate.iso_name(cdimage)
    if cdimage2 is not None:
        if cdimage is None:
            raise ValidationError("cdimage2 requires cdimage")
        validate.iso_name(cdimage2)


def bhyve_extra_opts(current: str | None, cdimage: str, cdimage2: str | None = None) -> str:
    """`bhyve_extra_opts` with the ISO(s) attached as AHCI CD-ROMs on PCI slot 3."""
    parts = [current.strip()] if current and current.strip() else []
    parts.append(f"-s 3:0,ahci-cd,{iso_path(cdimage)}")
    if cdimage2 is not None:
        parts.append(f"-s 3:1,ahci-cd,{iso_path(cdimage2)}")
    return " ".join(parts)


def stop_args(
    uuid: str, *, brand: str, force: bool = False, timeout: int | None = None
) -> list[str]:
    """`vmadm stop` arguments: `-F`, or `-t <n>` for HVM brands when n > 0."""
    vm = validate.uuid(uuid)
    kind = validate.brand(brand)
    if timeout is not None:
        validate.timeout(timeout)
    args = ["stop", vm]
    if force:
        args.append("-F")
    elif timeout and kind in validate.HVM_BRANDS:
        args += ["-t", str(timeout)]
    return args


def reboot_args(uuid: str, *, force: bool = False) -> list[str]:
    """`vmadm reboot` arguments: only `-F` exists in effect."""
    args = ["reboot", validate.uuid(uuid)]
    if force:
        args.append("-F")
    return args


def get_args(uuid: str) -> list[str]:
    return ["get", validate.uuid(uuid)]


def update_args(uuid: str) -> list[str]:
    """`vmadm update <uuid>`: the JSON payload goes on stdin (never a tty)."""
    return ["update", validate.uuid(uuid)]


def lookup_args() -> list[str]:
    return ["lookup", "-j", "-o", ",".join(LISTING_FIELDS)]


def events_args() -> list[str]:
    """`vmadm events -j -r`: JSON lines, starting with a `ready` snapshot of every VM."""
    return ["events", "-j", "-r"]


def ls_argv(iso_dir: str) -> list[str]:
    """A complete argv (not vmadm) listing the ISO directory, one name per line.

    `-p` marks directories with a trailing `/` so they can be skipped; `--` ends options.
    Both GNU and illumos ls accept these.
    """
    return ["ls", "-1", "-p", "--", iso_dir]


# -- preparing an ISO start (isoprep.py) ----------------------------------------------------

ISO_FS_OPTIONS = "[ro,nodevices]"


def zonecfg_info_fs_args(uuid: str) -> list[str]:
    """`zonecfg -z <uuid> info fs`: the zone's fs resources."""
    return ["-z", validate.uuid(uuid), "info", "fs"]


def zonecfg_add_iso_args(uuid: str, iso_dir: str) -> list[str]:
    """`zonecfg -z <uuid> '<subcommands>'`: the node's ISO directory lofs-mounted read-only at
    /iso in the zone. The subcommands are ONE argument (zonecfg splits them at `;`), built
    from validated values only: zonecfg reads blanks and `;` as separators."""
    special = validate.node_path(iso_dir, "ISO directory")
    script = (f"add fs; set dir={ISO_MOUNT}; set special={special}; set type=lofs; "
              f"add options {ISO_FS_OPTIONS}; end")
    return ["-z", validate.uuid(uuid), script]


def fs_dirs(info: str) -> dict[str, str]:
    """`dir` -> `special` of every resource in `zonecfg info fs` output (`fs:`, then
    tab-indented `dir: /iso`, `special: /iso`, ...)."""
    found: dict[str, str] = {}
    current: dict[str, str] | None = None
    for line in [*info.splitlines(), "end:"]:
        if not line[:1].isspace():
            if current is not None and "dir" in current:
                found[current["dir"]] = current.get("special", "")
            current = {} if line.strip() == "fs:" else None
            continue
        key, sep, value = line.strip().partition(":")
        if current is not None and sep:
            current[key] = value.strip()
    return found


def mkdir_argv(path: str) -> list[str]:
    return ["mkdir", "-p", "--", path]


def touch_argv(paths: list[str]) -> list[str]:
    return ["touch", "--", *paths]


def check_iso_dir(path: str) -> str:
    """The configured ISO directory: an absolute path of printable characters."""
    if not path.startswith("/") or not path.isprintable() or "\n" in path:
        raise ValidationError(f"invalid ISO directory: {path!r} (an absolute path)")
    return path
