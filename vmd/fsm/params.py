"""Parameters of the status requests (docs/fsm.md §3.4, §3.5 parameter table).

Separate from the gate because it is the one step (5) that answers with field errors: a
400 FAILURE whose `result` is `{<field>: [<message>]}`, every bad field at once (as the
upstream serializers do). Only the parameters of the requested action are read; any other
key is ignored, whatever its value (`force` on a start is not validated).

| param          | actions                   | default                   | accepted            |
|----------------|---------------------------|---------------------------|---------------------|
| `update`       | all                       | start/reboot true, stop f.| boolean             |
| `cdimage`      | start                     | null                      | ISO of the VM's node|
| `cdimage_once` | start                     | true                      | boolean             |
| `cdimage2`     | start                     | null                      | ISO, with `cdimage` |
| `force`        | stop, reboot, PUT current | false                     | boolean             |
| `timeout`      | stop, reboot (HVM only)   | 180, 300 for Windows      | integer 0..3600     |
| `freeze`       | stop                      | false                     | boolean             |
| `unfreeze`     | stop                      | false                     | boolean             |

Booleans: JSON true/false, the integers 1/0, or the strings true/false/1/0 in any case.
`null` is not a boolean (400). A JSON `null` for `cdimage`/`cdimage2` means "not given".
`timeout` exists only for HVM brands (kvm, bhyve); for zones it is ignored, not validated.
An integral float (`60.0`) is a whole number; `0` means vmadm's own default.

`order_by` of the list (§3.1) is parsed here too (`parse_order_by`): it is the other
parameter a principal controls the cost of, so its bounds live next to the others.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from vmd.fsm import replies
from vmd.model import Action

FieldErrors = dict[str, list[str]]

MAX_TIMEOUT = 3600
# The sort fields of `order_by`, in the order the 412 message names them.
ORDER_FIELDS = ("hostname", "alias", "status", "status_change", "uuid")
OrderBy = list[tuple[str, bool]]
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})


@dataclass(frozen=True, slots=True)
class PowerParams:
    """The parsed parameters of a start/stop/reboot.

    `timeout` is the graceful-shutdown time to pass to vmadm (None: not passed, i.e. zones,
    or a forced action); `deadline_timeout` the seconds the task's deadline allows for it.
    """

    update: bool
    force: bool = False
    timeout: int | None = None
    deadline_timeout: int = 0
    freeze: bool = False
    unfreeze: bool = False
    cdimage: str | None = None
    cdimage_once: bool = True
    cdimage2: str | None = None


# Default parameters per (action, hvm, default timeout): a handful of entries.
_DEFAULTS: dict[tuple[Action, bool, int], PowerParams] = {}


def parse_bool(value: Any) -> bool | None:
    """The boolean `value` stands for, or None when it is not one."""
    if isinstance(value, bool):
        return value
    if type(value) is int:
        return True if value == 1 else False if value == 0 else None
    if isinstance(value, str):
        low = value.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    return None


def parse_timeout(value: Any) -> int | None:
    """A timeout in 0..3600 from a JSON integer, integral float or digit string; else None."""
    if type(value) is int:
        number = value
    elif type(value) is float and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        try:
            number = int(value)
        except ValueError:
            # Over Python's 4300-digit limit for int(str): the ValueError crashed the
            # daemon (found by the fault suite's fuzzer, docs/reliability.md).
            return None
    else:
        return None
    return number if 0 <= number <= MAX_TIMEOUT else None


def _flag(data: Mapping[str, Any], key: str, default: bool, errors: FieldErrors) -> bool:
    if key not in data:
        return default
    value = parse_bool(data[key])
    if value is None:
        errors[key] = [replies.INVALID_BOOLEAN]
        return default
    return value


def _iso(data: Mapping[str, Any], key: str, isos: Collection[str], errors: FieldErrors) -> Any:
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or value not in isos):
        errors[key] = [replies.invalid_choice(value)]
    return value


def parse_power(
    action: Action,
    data: Mapping[str, Any],
    hvm: bool,
    isos: Collection[str],
    default_timeout: int,
) -> PowerParams | FieldErrors:
    """The parameters of a start/stop/reboot, or the field errors (step 5 of §3.5).

    `default_timeout` is 180, or 300 for a Windows VM (the caller knows the settings).
    Without data the answer is a shared (frozen) instance.
    """
    if not data:  # the common case: every default
        key = (action, hvm, default_timeout)
        params = _DEFAULTS.get(key)
        if params is None:
            params = _DEFAULTS[key] = PowerParams(
                update=action is not Action.STOP,
                timeout=None if action is Action.START or not hvm else default_timeout,
                deadline_timeout=default_timeout,
            )
        return params
    errors: FieldErrors = {}
    update = _flag(data, "update", action is not Action.STOP, errors)
    if action is Action.START:
        cdimage = _iso(data, "cdimage", isos, errors)
        once = _flag(data, "cdimage_once", True, errors)
        cdimage2 = data.get("cdimage2")
        if cdimage2 is not None and data.get("cdimage") is None:
            errors["cdimage2"] = [replies.CDIMAGE2_WITHOUT_CDIMAGE]
        else:
            cdimage2 = _iso(data, "cdimage2", isos, errors)
        if errors:
            return errors
        return PowerParams(update, deadline_timeout=default_timeout, cdimage=cdimage,
                           cdimage_once=once, cdimage2=cdimage2)
    force = _flag(data, "force", False, errors)
    timeout: int | None = None
    deadline_timeout = default_timeout
    if hvm:
        timeout = default_timeout
        if "timeout" in data:
            parsed = parse_timeout(data["timeout"])
            if parsed is None:
                errors["timeout"] = [replies.INVALID_INTEGER]
            else:
                timeout = parsed
        # 0 = vmadm's own default (180 s): the deadline must still allow for it.
        deadline_timeout = timeout or default_timeout
        if force:
            timeout = None
    freeze = unfreeze = False
    if action is Action.STOP:
        freeze = _flag(data, "freeze", False, errors)
        unfreeze = _flag(data, "unfreeze", False, errors)
    if errors:
        return errors
    return PowerParams(update, force, timeout, deadline_timeout, freeze, unfreeze)


def parse_force(data: Mapping[str, Any]) -> bool | FieldErrors:
    """`force` of PUT .../status/current."""
    errors: FieldErrors = {}
    force = _flag(data, "force", False, errors)
    return errors or force


def parse_order_by(value: Any) -> OrderBy | None:
    """`order_by` of `GET /vm/status` as [(field, descending)], None when invalid (412).

    A comma-separated string (or a JSON list of strings); blanks around items and empty
    items are ignored; `-field` descending, `+field` or `field` ascending; nothing given
    means `hostname`. Each field may appear once, so there are at most five: a repeated
    field (in either direction) is a 412 like an unknown one. Sorting by a field twice
    changes nothing, and each item used to cost a sort of the whole list (7,000 items fit
    in a 64 KiB request: seconds of the event loop per request, issue 12).
    """
    if value is None:
        items: list[Any] = []
    elif isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        return None
    order: OrderBy = []
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            return None
        name = item.strip()
        if not name:
            continue
        descending = name[0] == "-"
        if name[0] in "+-":
            name = name[1:].strip()
        if name not in ORDER_FIELDS or name in seen:
            return None  # returns at the sixth field at the latest
        seen.add(name)
        order.append((name, descending))
    return order or [("hostname", False)]
