"""Pure parsing of `vmadm events -j` lines and the diff of two node snapshots.

`vmadm events -j -r` prints one JSON object per line (docs/driver.md, vmadm fact 7): first a
`ready` line holding every VM (`vms`, keyed by zonename), then `create`/`modify` (with the
full new `vm`) and `delete` (no `vm`), each with an ISO-8601 UTC `date`. The watcher keeps
only what vmd needs of each VM (`summary`, the fields of `commands.LISTING_FIELDS`) and
reports a VM when it appears, disappears, or its `state` changes (`diff`). No I/O here, so
it is table-tested.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vmd.model import JsonObject, VmUuid

from . import nodejson, validate
from .commands import LISTING_FIELDS
from .errors import ValidationError

EVENT_TYPES = frozenset({"ready", "create", "modify", "delete"})


class BadEvent(ValueError):
    """A line of `vmadm events` that is not a well-formed event."""


@dataclass(frozen=True, slots=True)
class Event:
    """One parsed event. `vms` only for `ready`; `uuid`/`vm` for the others."""

    type: str
    date: float  # POSIX seconds: the node's change time
    uuid: VmUuid | None = None
    vm: JsonObject | None = None
    vms: dict[VmUuid, JsonObject] | None = None


def parse_date(value: object) -> float:
    """An ISO-8601 date (vmadm prints UTC with milliseconds and `Z`) as POSIX seconds."""
    if not isinstance(value, str):
        raise BadEvent(f"date is not a string: {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadEvent(f"bad date: {value!r}") from None
    if parsed.tzinfo is None:
        raise BadEvent(f"date without a time zone: {value!r}")
    return parsed.timestamp()


def summary(vm: Mapping[str, Any]) -> JsonObject:
    """The part of a VM object vmd uses (the same fields `listing()` asks vmadm for)."""
    return {key: vm[key] for key in LISTING_FIELDS if key in vm}


def vm_uuid(vm: Mapping[str, Any], fallback: object = None) -> VmUuid | None:
    """The VM's uuid if it is a valid one (zones that are not VMs are skipped)."""
    try:
        return validate.uuid(vm.get("uuid", fallback))
    except ValidationError:
        return None


def snapshot(vms: object) -> dict[VmUuid, JsonObject]:
    """VM objects (a list, or a map keyed by zonename) as uuid -> summary."""
    items: list[tuple[object, object]]
    if isinstance(vms, dict):
        items = list(vms.items())
    elif isinstance(vms, list):
        items = [(None, vm) for vm in vms]
    else:
        raise BadEvent(f"VMs are neither a list nor an object: {vms!r:.60}")
    result: dict[VmUuid, JsonObject] = {}
    for key, vm in items:
        if not isinstance(vm, dict):
            raise BadEvent(f"VM entry is not an object: {vm!r:.60}")
        uuid = vm_uuid(vm, key if isinstance(key, str) else None)
        if uuid is not None:
            result[uuid] = summary(vm)
    return result


def parse_event(line: bytes | str) -> Event | None:
    """Parse one line; None for an event type the driver does not use."""
    try:
        raw = nodejson.loads(line)
    except ValueError:
        raise BadEvent(f"not JSON: {line[:80]!r}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise BadEvent(f"not an event: {line[:80]!r}")
    kind = raw["type"]
    date = parse_date(raw.get("date"))
    if kind not in EVENT_TYPES:
        return None
    if kind == "ready":
        vms = raw.get("vms")
        if not isinstance(vms, dict | list):
            raise BadEvent("ready event without vms")
        return Event(kind, date, vms=snapshot(vms))
    vm = raw.get("vm")
    uuid = vm_uuid(raw) or (vm_uuid(vm) if isinstance(vm, dict) else None)
    if uuid is None:
        return Event(kind, date)  # a zone that is not a VM of ours: ignored by the watcher
    if kind == "delete":
        return Event(kind, date, uuid=uuid)
    if not isinstance(vm, dict):
        raise BadEvent(f"{kind} event without vm")
    return Event(kind, date, uuid=uuid, vm=summary(vm))


def state_of(vm: Mapping[str, Any] | None) -> str | None:
    if vm is None:
        return None
    state = vm.get("state")
    return state if isinstance(state, str) else None


def diff(
    known: Mapping[VmUuid, JsonObject], new: Mapping[VmUuid, JsonObject]
) -> list[tuple[VmUuid, JsonObject | None]]:
    """Power-relevant differences: (uuid, new VM or None when it vanished), sorted by uuid.

    A VM is reported when it is new, gone, or its `state` differs; other field changes
    (alias, metadata, ...) are not power changes and are not reported.
    """
    changes: list[tuple[VmUuid, JsonObject | None]] = []
    for uuid in sorted(known.keys() | new.keys()):
        old_vm, new_vm = known.get(uuid), new.get(uuid)
        if new_vm is None:
            changes.append((uuid, None))
        elif old_vm is None or state_of(old_vm) != state_of(new_vm):
            changes.append((uuid, new_vm))
    return changes
