"""Following vmd's status changes live (protocol.md §9), for `vmctl events` and programs.

`follow(url, ...)` is `vmd.bus.EventFollower` with the bindings a principal may hold: an
admin binds every VM's `status_change` (`vm.*.*.status_change`); an owner's topic
permission on `vmd.events` lets it read only keys of its own owner_uuids, so it names them
(`owners`) and binds `vm.<owner>.*.status_change` for each (a broader key is refused by the
broker: `BindRefused`). `--vm` and `--task` narrow what is shown (`matches`), not what is
bound: events carry the VM's uuid, hostname and task id in their body.
"""

from __future__ import annotations

from collections.abc import Sequence

from vmd.bus import BindRefused, BusSettings, EventFollower, EventMessage, Notify

__all__ = ["BindRefused", "EventFollower", "EventMessage", "follow", "matches",
           "status_bindings"]

ALL_VMS = "vm.*.*.status_change"


def status_bindings(owners: Sequence[str] = ()) -> list[str]:
    """The routing keys of every status change the principal may read (see above)."""
    if not owners:
        return [ALL_VMS]
    return [f"vm.{owner}.*.status_change" for owner in dict.fromkeys(owners)]


def matches(event: EventMessage, *, vm: str | None = None, task: str | None = None) -> bool:
    """Whether a status change is of VM `vm` (hostname or uuid) and task `task`."""
    body = event.body
    if vm is not None and vm not in (body.get("hostname"), body.get("uuid")):
        return False
    return task is None or body.get("task_id") == task


def follow(url: str | BusSettings, *, owners: Sequence[str] = (), notify: Notify | None = None,
           connection_name: str = "vmd-events", connect_attempts: int | None = 3
           ) -> EventFollower:
    """`async with follow(url) as events: async for event in events: ...`"""
    settings = url if isinstance(url, BusSettings) else BusSettings(
        url, connection_name=connection_name, connect_attempts=connect_attempts)
    return EventFollower(settings, status_bindings(owners), notify=notify)
