"""A VM's power history (`GET /vm/<vm>/status/history`, a vmd extension): the pure part.

Every applied status change is kept as a `HistoryEntry` (written by the daemon in the same
store transaction as the change, vmd.store.history). A request for it is checked here like
any other (the VM as the principal may see it: 404 `VM not found` otherwise; `limit` and
`before` as field errors, 400 FAILURE), and answered from the store after the turn's write
(vmd.daemon.history): the decision returns a `HistoryQuery`, not a reply. The VM is found
as every VM request finds it (vmd.fsm.lookup: 409 for a hostname several visible VMs share).

| param    | default | accepted                                                      |
|----------|---------|---------------------------------------------------------------|
| `limit`  | 50      | integer 1..1000: at most this many entries                    |
| `before` | none    | integer >= 1 (a `seq`): only entries older than it             |

Integers: a JSON integer, an integral float or a digit string (as `timeout`); `null` means
"not given". The answer is 200 SUCCESS with `result` = a list, newest first, of
`{"seq", "status", "previous", "status_change", "cause", "task_id", "principal"}`; the next
page is `before` = the last entry's `seq`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vmd.fsm import replies
from vmd.fsm.decision import Decision, StatusChange
from vmd.fsm.lookup import resolve_vm
from vmd.fsm.render import iso_time
from vmd.fsm.world import World
from vmd.model import JsonObject, Principal, Reply, VmUuid

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
AT_LEAST_1 = "Ensure this value is greater than or equal to 1."
AT_MOST = f"Ensure this value is less than or equal to {MAX_LIMIT}."
# Digit strings longer than this are no seq nor limit (and int() of a huge one is slow).
_MAX_DIGITS = 20


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One applied status change of one VM (its `seq` is the event's)."""

    seq: int
    status: str
    previous: str
    status_change: float | None
    cause: str
    task_id: str | None
    principal: str | None


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """What to read: up to `limit` entries of a VM, older than `before` when given.
    `task_id` is the synchronous answer's dummy id (names no task, like a status read's)."""

    vm_uuid: VmUuid
    limit: int
    before: int | None
    task_id: str


def entry_of(c: StatusChange) -> HistoryEntry:
    return HistoryEntry(c.seq, c.status.value, c.previous.value, c.time, c.cause.value,
                        c.task_id, c.principal)


def _integer(value: Any) -> int | None:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer() and abs(value) < 1e18:
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS:
        return int(value)
    return None


def _bounded(data: Mapping[str, Any], name: str, high: int | None,
             errors: dict[str, list[str]]) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    number = _integer(value)
    if number is None:
        errors[name] = [replies.INVALID_INTEGER]
    elif number < 1:
        errors[name] = [AT_LEAST_1]
    elif high is not None and number > high:
        errors[name] = [AT_MOST]
    else:
        return number
    return None


def parse_history(data: Mapping[str, Any]) -> tuple[int, int | None] | dict[str, list[str]]:
    """(limit, before), or the field errors (every bad field at once)."""
    errors: dict[str, list[str]] = {}
    limit = _bounded(data, "limit", MAX_LIMIT, errors)
    before = _bounded(data, "before", None, errors)
    if errors:
        return errors
    return (DEFAULT_LIMIT if limit is None else limit), before


def get_history(world: World, principal: Principal, ident: str,
                data: Mapping[str, Any]) -> Decision:
    """`GET /vm/<vm>/status/history`: a `HistoryQuery` for the daemon to read, or the 404 /
    400 answer."""
    vm = resolve_vm(world.vms, ident, principal)
    if isinstance(vm, Reply):
        return Decision(reply=vm)
    parsed = parse_history(data)
    if isinstance(parsed, dict):
        return Decision(reply=replies.failure(parsed, world.new_task_id()))
    limit, before = parsed
    return Decision(read=HistoryQuery(vm.uuid, limit, before, world.new_task_id()))


def history_object(entry: HistoryEntry) -> JsonObject:
    return {
        "seq": entry.seq,
        "status": entry.status,
        "previous": entry.previous,
        "status_change": iso_time(entry.status_change),
        "cause": entry.cause,
        "task_id": entry.task_id,
        "principal": entry.principal,
    }


def history_reply(query: HistoryQuery, entries: Iterable[HistoryEntry]) -> Reply:
    """The 200 answer for entries read newest first."""
    return replies.success([history_object(e) for e in entries], query.task_id)
