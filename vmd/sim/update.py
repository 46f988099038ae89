"""`vmadm update <uuid>` with `key=value` pairs or a JSON payload (docs/simulator.md).

The payload comes from the arguments, else from `-f <file>`, else from stdin (refused
when stdin is a tty). Typed values are checked (`Invalid value(s) for: ...`), unknown
or non-updatable properties are dropped silently, JSON `null` removes a property
(the string `null` from `key=null` does not). The change is one `modify` event.
"""

from __future__ import annotations

import json
import os
import re
import sys

from vmd.sim.cmdio import Fail, Usage
from vmd.sim.listing import parse_kv
from vmd.sim.world import World

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from vmd.sim.cmdio import Io
    from vmd.sim.env import Env

    Json = dict[str, Any]

INT_PROPS = (
    "ram",
    "max_physical_memory",
    "max_swap",
    "max_locked_memory",
    "max_lwps",
    "vcpus",
    "cpu_cap",
    "cpu_shares",
    "quota",
    "zfs_io_priority",
    "tmpfs",
)
BOOL_PROPS = (
    "autoboot",
    "firewall_enabled",
    "do_not_inventory",
    "indestructible_zoneroot",
    "indestructible_delegated",
)
STR_PROPS = (
    "alias",
    "hostname",
    "owner_uuid",
    "billing_id",
    "boot",
    "dns_domain",
    "package_name",
    "package_version",
    "bhyve_extra_opts",
    "qemu_extra_opts",
    "cpu_type",
)
LIST_PROPS = ("resolvers",)
HASHES = ("tags", "customer_metadata", "internal_metadata")
ARRAYS = {"disks": "path", "nics": "mac"}
_INT = re.compile(r"^-?[0-9]+$")


def _convert(key: str, value: Any) -> Any:
    """The typed value of a simple property; raises ValueError when it is invalid."""
    if key in INT_PROPS:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and _INT.match(value):
            return int(value)
        raise ValueError(key)
    if key in BOOL_PROPS:
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise ValueError(key)
    if key in LIST_PROPS:
        if isinstance(value, str):
            return [v for v in value.split(",") if v]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ValueError(key)
    if not isinstance(value, str):
        raise ValueError(key)
    return value


def _check_special(key: str, value: Any) -> bool:
    verb, _, target = key.partition("_")
    if target in HASHES:
        if verb == "set":
            return isinstance(value, dict)
        return verb == "remove" and isinstance(value, list)
    if target in ARRAYS:
        if verb == "remove":
            return isinstance(value, list) and all(isinstance(v, str) for v in value)
        return verb in ("add", "update") and (
            isinstance(value, list) and all(isinstance(v, dict) for v in value)
        )
    return False


def _is_special(key: str) -> bool:
    verb, _, target = key.partition("_")
    return verb in ("set", "remove", "add", "update") and (target in HASHES or target in ARRAYS)


def _apply(config: Json, payload: Json) -> None:
    for key, value in payload.items():
        if not _is_special(key):
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
            continue
        verb, _, target = key.partition("_")
        if target in HASHES:
            current = dict(config.get(target, {}))
            if verb == "set":
                current.update(value)
            else:
                for k in value:
                    current.pop(k, None)
            config[target] = current
            continue
        ident = ARRAYS[target]
        items = [dict(x) for x in config.get(target, [])]
        if verb == "add":
            items.extend(dict(x) for x in value)
        elif verb == "remove":
            items = [x for x in items if x.get(ident) not in value]
        else:
            for change in value:
                for item in items:
                    if item.get(ident) == change.get(ident):
                        item.update(change)
        config[target] = items


def _payload(opts: Json, args: list[str]) -> tuple[Json, bool]:
    """The update payload and whether it came from `key=value` arguments."""
    kv = parse_kv(args)
    if kv:
        return dict(kv), True
    filename = opts.get("file")
    if not isinstance(filename, str) or filename == "-":
        if os.isatty(0):
            raise Usage("Will not update from stdin when stdin is a tty.")
        data = sys.stdin.buffer.read()
    else:
        try:
            with open(filename, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise Fail(f"File: {filename} does not exist.") from None
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise Fail(f"Invalid JSON payload: {exc}") from None
    if not isinstance(payload, dict):
        raise Fail("Invalid JSON payload: not an object")
    return payload, False


def update(env: Env, io: Io, uuid: str, opts: Json, args: list[str]) -> int:
    raw, from_args = _payload(opts, args)
    with World(env) as w:
        w.settle()
        if w.rec(uuid) is None:
            raise Fail(f"VM {uuid} not found")
        payload: Json = {}
        invalid: list[str] = []
        for key, value in raw.items():
            if _is_special(key):
                if not from_args and _check_special(key, value):
                    payload[key] = value
                else:
                    invalid.append(key)
            elif key in INT_PROPS + BOOL_PROPS + STR_PROPS + LIST_PROPS:
                if value is None and not from_args:
                    payload[key] = None
                    continue
                try:
                    payload[key] = _convert(key, value)
                except ValueError:
                    invalid.append(key)
            # anything else is not updatable: dropped silently, as vmadm does
        if invalid:
            raise Fail(f"Invalid value(s) for: {','.join(invalid)}")
        w.mutate(uuid, lambda rec: _apply(rec["config"], payload))
    io.err(f"Successfully updated VM {uuid}")
    return 0
