"""Pending definitions (docs/fsm.md §6): staging one, and what it means for a power action.

Separate from the gate because it is data inspection, not state: whether a pending change
resizes a disk, which the power checks (§3.5 step 8) turn into 428/417 answers. (An update
is effective when `update` is true and a change is pending; vmd.fsm.power decides that.)

A pending change is a JSON object of `vmadm update` properties. It counts as a disk resize
when an `update_disks` entry carries a `size` that differs from the active definition's
disk with the same `path` (or names a disk the active definition does not have).
"""

from __future__ import annotations

from typing import Any

from vmd.model import JsonObject

_MISSING = object()


def _active_sizes(active: JsonObject | None) -> dict[Any, Any]:
    disks = (active or {}).get("disks")
    if not isinstance(disks, list):
        return {}
    return {
        d["path"]: d.get("size")
        for d in disks
        if isinstance(d, dict) and isinstance(d.get("path"), str)
    }


def disk_resize(pending: JsonObject | None, active: JsonObject | None) -> bool:
    """Whether applying `pending` changes the size of a disk."""
    updates = (pending or {}).get("update_disks")
    if not isinstance(updates, list):
        return False
    sizes: dict[Any, Any] | None = None
    for disk in updates:
        if isinstance(disk, dict) and "size" in disk:
            if sizes is None:
                sizes = _active_sizes(active)
            path = disk.get("path")
            if not isinstance(path, str) or sizes.get(path, _MISSING) != disk["size"]:
                return True
    return False
