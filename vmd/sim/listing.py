"""`vmadm list` and `lookup` (docs/simulator.md, get, list, lookup, update).

`list` reproduces vmadm.js's table: fixed column widths, `-` for missing *or falsy*
values (vmadm tests `if (VM.flatten(m, field))`, so `false` and `0` print as `-`),
`-p` joins with `:` without escaping, trailing whitespace trimmed, and sorting with
JavaScript comparison semantics. `list` and `lookup -j` add the fake `type` (and
`ram` for non-HVM VMs); `get` (in vmd.sim.vmadm) does not.
"""

from __future__ import annotations

import functools
import re

from vmd.sim import store, vmobj
from vmd.sim.cmdio import Fail

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from vmd.sim.cmdio import Io
    from vmd.sim.env import Env

    Json = dict[str, Any]

LIST_FIELDS: dict[str, tuple[str, int]] = {
    "alias": ("ALIAS", 10),
    "autoboot": ("AUTOBOOT", 8),
    "billing_id": ("BILLING_ID", 36),
    "boot_timestamp": ("BOOT_TIMESTAMP", 24),
    "brand": ("BRAND", 14),
    "cpu_cap": ("CPU_CAP", 7),
    "cpu_shares": ("CPU_SHARE", 9),
    "cpu_type": ("CPU_TYPE", 8),
    "create_timestamp": ("CREATE_TIMESTAMP", 24),
    "dns_domain": ("DOMAIN", 32),
    "do_not_inventory": ("DNI", 5),
    "docker": ("DOCKER", 6),
    "exit_timestamp": ("EXIT_TIMESTAMP", 24),
    "firewall_enabled": ("FIREWALL_ENABLED", 16),
    "hostname": ("HOSTNAME", 32),
    "image_uuid": ("IMAGE_UUID", 36),
    "indestructible_delegated": ("INDESTR_DATA", 12),
    "indestructible_zoneroot": ("INDESTR_ROOT", 12),
    "ram": ("RAM", 7),
    "max_locked_memory": ("MAX_LOCKED", 10),
    "max_lwps": ("MAX_LWP", 7),
    "max_physical_memory": ("MAX_PHYS", 8),
    "max_swap": ("MAX_SWAP", 8),
    "owner_uuid": ("OWNER_UUID", 36),
    "package_name": ("PACKAGE_NAME", 32),
    "package_version": ("PACKAGE_VER", 11),
    "pid": ("PID", 6),
    "qemu_extra_opts": ("QEMU_EXTRA_OPTS", 15),
    "quota": ("QUOTA", 5),
    "zone_state": ("ZONE_STATE", 10),
    "state": ("STATE", 16),
    "tmpfs": ("TMPFS", 5),
    "type": ("TYPE", 4),
    "uuid": ("UUID", 36),
    "vcpus": ("VCPUS", 5),
    "zfs_io_priority": ("IO_PRIORITY", 11),
    "zpool": ("ZPOOL", 12),
    "zonename": ("ZONENAME", 12),
    "zonepath": ("ZONEPATH", 40),
    "zoneid": ("ZONEID", 6),
}
DEFAULT_SORT = "ram,uuid"
DEFAULT_ORDER = "uuid,type,ram,state,alias"
FLATTENABLE_ARRAY_HASH_KEYS = ("disks", "nics")
FLATTENABLE_HASH_KEYS = ("customer_metadata", "internal_metadata", "tags")
_DISK_KEY = re.compile(
    r"^disks\.[*0-9]*\.(boot|image_name|image_size|image_uuid|size|media|model|zpool)$"
)
_NIC_KEY = re.compile(
    r"nics\.[*0-9]*\.(dhcp_server|gateway|interface|ip|mac|model|netmask|nic_tag|vlan_id)$"
)
_META_KEY = re.compile(r"^(tags|customer_metadata|internal_metadata)\..*")
_BAD_COLUMN = re.compile(r"^(disks|filesystems|nics)\.\*")


def valid_filter_key(key: str) -> bool:
    return bool(
        key in LIST_FIELDS or _DISK_KEY.match(key) or _NIC_KEY.search(key) or _META_KEY.match(key)
    )


def _column(field: str) -> tuple[str, int] | None:
    if field in LIST_FIELDS:
        return LIST_FIELDS[field]
    parts = field.split(".")
    if (len(parts) == 3 and parts[0] in FLATTENABLE_ARRAY_HASH_KEYS) or (
        len(parts) == 2 and parts[0] in FLATTENABLE_HASH_KEYS
    ):
        return field.upper(), 20
    return None


def flatten(obj: Any, field: str) -> Any:
    """VM.flatten: follow a dotted path (numeric parts index arrays); None if absent."""
    cur = obj
    for part in field.split("."):
        if isinstance(cur, dict):
            if part not in cur:
                return None
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
    return cur


def _candidates(obj: Any, parts: list[str]) -> list[Any]:
    """Values at a filter path; `*` (or an empty index) matches every array element."""
    if not parts:
        return [obj]
    head, rest = parts[0], parts[1:]
    if isinstance(obj, list):
        if head in ("*", ""):
            return [v for el in obj for v in _candidates(el, rest)]
        if head.isdigit() and int(head) < len(obj):
            return _candidates(obj[int(head)], rest)
        return []
    if isinstance(obj, dict) and head in obj:
        return _candidates(obj[head], rest)
    return []


def js_str(v: Any) -> str:
    """JavaScript's String(v) for JSON values."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, list):
        return ",".join("" if x is None else js_str(x) for x in v)
    if isinstance(v, dict):
        return "[object Object]"
    return str(v)


def _truthy(v: Any) -> bool:
    return v is not None and v is not False and v != 0 and v != ""


def _matches(obj: Json, filters: dict[str, str]) -> bool:
    for key, want in filters.items():
        values = _candidates(obj, key.split("."))
        if want.startswith("~"):
            rx = re.compile(want[1:], re.IGNORECASE)
            if not any(rx.search(js_str(v)) for v in values):
                return False
        elif not any(js_str(v) == want for v in values):
            return False
    return True


def parse_kv(args: list[str]) -> dict[str, str]:
    """vmadm's parseKeyEqualsValue: `k=v` (an argument without `=` is `k=`); last wins."""
    out: dict[str, str] = {}
    for arg in args:
        key, _, value = arg.partition("=")
        out[key] = value
    return out


def _all_objects(env: Env) -> list[Json]:
    from vmd.sim.world import World  # not at the top: `get` does without it

    with World(env) as w:
        w.settle()
        recs = [w.rec(u) for u in w.uuids()]
    return [vmobj.add_fake_fields(vmobj.render(r)) for r in recs if r is not None]


def _js_cmp(a: Any, b: Any) -> int:
    """sortVM's comparison of two flattened values (ascending)."""

    def gt(x: Any, y: Any) -> bool:
        if x is None or y is None:
            return False
        if isinstance(x, str) and isinstance(y, str):
            return x > y
        try:
            return float(x) > float(y)
        except (TypeError, ValueError):
            return js_str(x) > js_str(y)

    if gt(a, b) or (not _truthy(a) and _truthy(b)) or (a is None and b is not None):
        return 1
    if gt(b, a) or (_truthy(a) and not _truthy(b)) or (a is not None and b is None):
        return -1
    return 0


def _sort(objs: list[Json], fields: list[str]) -> None:
    def cmp(a: Json, b: Json) -> int:
        for field in fields:
            direction = -1 if field.startswith("-") else 1
            name = field[1:] if field[:1] in "+-" and field else field
            c = _js_cmp(flatten(a, name), flatten(b, name))
            if c:
                return c * direction
        return 0

    objs.sort(key=functools.cmp_to_key(cmp))


def _line(fields: list[str], obj: Json | None, parsable: bool) -> str:
    cells = []
    for field in fields:
        header, width = _column(field) or (field.upper(), 20)
        if obj is None:
            value = header
        else:
            raw = flatten(obj, field)
            value = js_str(raw) if _truthy(raw) else ("" if parsable else "-")
        cells.append(value if parsable else value.ljust(width))
    return (":" if parsable else "  ").join(cells).rstrip()


def list_(env: Env, io: Io, opts: Json, args: list[str]) -> int:
    filters = parse_kv(args)
    sortby = str(opts.get("sortby", DEFAULT_SORT))
    order = str(opts.get("order", DEFAULT_ORDER))
    parsable = bool(opts.get("parsable"))
    header = bool(opts["header"]) if "header" in opts else not parsable
    _check_keys(filters, order, sortby)
    objs = [o for o in _all_objects(env) if _matches(o, filters)]
    sort_fields = sortby.split(",")
    order_fields = order.split(",")
    _check_fields(sort_fields, order_fields)
    _sort(objs, sort_fields)
    lines = []
    if header:
        lines.append(_line(order_fields, None, parsable))
    lines.extend(_line(order_fields, o, parsable) for o in objs)
    if lines:
        io.out("\n".join(lines) + "\n")
    return 0


def _check_keys(filters: dict[str, str], order: str, sortby: str) -> None:
    """vmadm's key checks, before any VM is read: filter keys, then `-o`, then `-s`."""
    for key in filters:
        if not valid_filter_key(key):
            raise Fail(f'Invalid filter key: "{key}"')
    for key in order.split(","):
        if _BAD_COLUMN.match(key):
            raise Fail(f'Invalid order key: "{key}"')
    for key in sortby.split(","):
        if _BAD_COLUMN.match(key):
            raise Fail(f'Invalid sort key: "{key}"')


def _check_fields(sort_fields: list[str], order_fields: list[str]) -> None:
    """Every sort field (less its `+`/`-`) and every order field must be a column."""
    for field in sort_fields:
        name = field[1:] if field[:1] in ("-", "+") else field
        if _column(name) is None:
            raise Fail(f"invalid sort field: {field}")
    for field in order_fields:
        if _column(field) is None:
            raise Fail(f"invalid order field: {field}")


def lookup(env: Env, io: Io, opts: Json, args: list[str]) -> int:
    filters = parse_kv(args)
    fields: list[str] | None = None
    if opts.get("json"):
        if "output" in opts:
            fields = str(opts["output"]).split(",")
    elif "output" in opts:
        raise Fail("Cannot specify -o without -j")
    for key in filters:
        if not valid_filter_key(key):
            raise Fail(f'Invalid lookup key: "{key}"')
    results = [o for o in _all_objects(env) if _matches(o, filters)]
    if opts.get("unique") and len(results) != 1:
        raise Fail(f"Requested unique lookup but found {len(results)} results.")
    if opts.get("json"):
        if fields is not None:
            reduced = [{k: o[k] for k in fields if k in o} for o in results]
            results = [o for o in reduced if o]
        io.out(store.dumps(results, indent=2) + "\n")
    else:
        io.out("".join(o["uuid"] + "\n" for o in results))
    return 0
