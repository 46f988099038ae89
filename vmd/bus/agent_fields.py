"""Typed access to the fields of one agent-protocol message, with one-line errors.

Split from `vmd.bus.agent_messages` (which says what each message holds) so that the
schemas stay readable: this is only how a decoded JSON object is checked field by field.

The checks also refuse what the daemon could not keep (`RefusedValue`, docs/bus.md §3 "Field
limits"): a report is decided in memory first and stored after, so a VM whose row the store
refuses (vmd.store's `RowError`: a NUL, a key over `MAX_KEY_BYTES`) would stay in the
daemon's world unstored, and every later full sync of its node, which names or misses it,
would fail again on its row. Refused here, such a value changes nothing: an item holding it
(an observation, a VM of a full sync) is left out of its message (`LeftOut`, the others are
independent and kept: one bad VM must not stop its node's other VMs syncing), and in the
message's own fields it refuses the message (`RefusedValue`). What is checked is
what becomes a column or a key: a VM uuid has vmadm's own shape (36 characters with dashes
at 8, 13, 18 and 23: what vmadm, and the simulator after it, accept for `--uuid`; a stricter
check would refuse a node's whole listing for one VM vmadm made), an identifier at most
`MAX_NAME` bytes without NUL, and the strings of a VM object the daemon copies into its
record (`VM_TEXT`). The rest of a VM object is stored as JSON, which escapes a NUL, and is
not looked into.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from vmd.model import Action, JsonObject, NodeName, Observation, VmUuid

# The UTF-8 bytes an identifier (task id, node, state, hostname, ...) may have: every real
# one is far shorter, and it stays well under the store's MAX_KEY_BYTES (1024) for a key.
MAX_NAME = 255
# An owner_uuid is in its VM's event routing keys, `vm.<owner_uuid>.<uuid>.status_change`,
# which AMQP bounds to 255 bytes: 128 leaves room for the rest.
MAX_OWNER = 128
# The strings of a node's VM object that `vmd.fsm.observe.vm_from_object` copies into the
# VM record (columns of the store), and their bounds; `ostype` is read from two sections.
VM_TEXT = {"hostname": MAX_NAME, "alias": MAX_NAME, "owner_uuid": MAX_OWNER,
           "brand": MAX_NAME}
VM_OSTYPE_SECTIONS = ("internal_metadata", "tags")
# vmadm's uuid check (the simulator's vmd.sim.env.is_uuid): 36 characters, dashes at 8, 13,
# 18 and 23. At most 144 UTF-8 bytes, so always a key the store holds.
_UUID = re.compile(r"[^-]{8}-[^-]{4}-[^-]{4}-[^-]{4}-[^-]{12}", re.DOTALL)


class ProtocolError(ValueError):
    """An agent-protocol message that does not match its schema."""


class RefusedValue(ProtocolError):
    """A well-formed message with a value the daemon could not keep (a NUL, a string over
    its bound, a VM uuid that is not one): refused like a report its sender may not send
    (counted, logged, acked), not dead-lettered as a bug (vmd.daemon.reports)."""


def _limited(where: str, key: str, value: str, limit: int) -> str:
    """`value` if it has no NUL and at most `limit` UTF-8 bytes, else `RefusedValue`."""
    if "\x00" in value:
        raise RefusedValue(f"{where}: {key!r} holds a NUL character")
    # A character is 1 to 4 bytes: only a string between limit/4 and limit characters long
    # needs the encode.
    if len(value) > limit or (len(value) * 4 > limit
                              and len(value.encode(errors="surrogatepass")) > limit):
        raise RefusedValue(f"{where}: {key!r} is over {limit} bytes")
    return value


def checked_vm_object(where: str, obj: JsonObject) -> JsonObject:
    """A node's VM object whose strings the daemon keeps (`VM_TEXT`, `ostype`) are within
    their bounds, else `RefusedValue`. A value of another type is ignored by the daemon (it
    takes its default), so it is not refused here."""
    for key, limit in VM_TEXT.items():
        value = obj.get(key)
        if isinstance(value, str):
            _limited(where, key, value, limit)
    for section in VM_OSTYPE_SECTIONS:
        part = obj.get(section)
        value = part.get("ostype") if isinstance(part, dict) else None
        if isinstance(value, str):
            _limited(where, f"{section}.ostype", value, MAX_NAME)
    return obj


@dataclass(frozen=True, slots=True)
class LeftOut:
    """An item a report's decoder left out (`Fields.observations`, a result of a batch): it
    held a value the daemon could not keep. `uuid`: its VM when that uuid itself is valid (a
    full sync keeps that VM's record instead of seeing it gone), else None (a VM the daemon
    could never have stored); `reason`: the field and its limit, for the log."""

    uuid: VmUuid | None
    reason: str


class Fields:
    """Typed access to one message's fields, with one-line errors naming kind and field."""

    def __init__(self, value: JsonObject, kind: str) -> None:
        self._value = value
        self._kind = kind

    def _bad(self, key: str, what: str) -> ProtocolError:
        return ProtocolError(f"{self._kind} message: {key!r} must be {what}")

    def text(self, key: str, *, empty: bool = False, limit: int | None = MAX_NAME) -> str:
        """A string; one with a NUL or over `limit` bytes is refused (`limit` None: free
        text, stored as JSON, such as a vmadm message)."""
        v = self._value.get(key)
        if not isinstance(v, str) or not (v or empty):
            raise self._bad(key, "a string" if empty else "a non-empty string")
        return v if limit is None else _limited(f"{self._kind} message", key, v, limit)

    def opt_text(self, key: str) -> str | None:
        v = self._value.get(key)
        if v is not None and not isinstance(v, str):
            raise self._bad(key, "a string or null")
        return v if v is None else _limited(f"{self._kind} message", key, v, MAX_NAME)

    def vm_uuid(self, key: str) -> VmUuid:
        """A VM uuid in vmadm's shape (36 characters, dashes at 8, 13, 18 and 23), no NUL."""
        v = self.text(key)
        if _UUID.fullmatch(v) is None:
            raise RefusedValue(f"{self._kind} message: {key!r} is not a uuid "
                               f"(36 characters, dashes at 8, 13, 18 and 23)")
        return VmUuid(v)

    def vm_object(self, key: str) -> JsonObject | None:
        """A node's VM object (or null), its kept strings checked (`checked_vm_object`)."""
        v = self.opt_obj(key)
        return v if v is None else checked_vm_object(f"{self._kind} message {key!r}", v)

    def number(self, key: str) -> float:
        v = self._value.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self._bad(key, "a number")
        return float(v)

    def opt_number(self, key: str) -> float | None:
        return None if self._value.get(key) is None else self.number(key)

    def integer(self, key: str) -> int:
        v = self._value.get(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self._bad(key, "an integer")
        return v

    def has(self, key: str) -> bool:
        return key in self._value

    def obj(self, key: str) -> JsonObject:
        v = self._value.get(key)
        if not isinstance(v, dict):
            raise self._bad(key, "an object")
        return v

    def opt_obj(self, key: str) -> JsonObject | None:
        v = self._value.get(key)
        if v is not None and not isinstance(v, dict):
            raise self._bad(key, "an object or null")
        return v

    def array(self, key: str) -> list[Any]:
        v = self._value.get(key)
        if not isinstance(v, list):
            raise self._bad(key, "a list")
        return v

    def strings(self, key: str) -> tuple[str, ...]:
        items = self.array(key)
        if not all(isinstance(i, str) for i in items):
            raise self._bad(key, "a list of strings")
        for item in items:
            _limited(f"{self._kind} message", f"{key}[]", item, MAX_NAME)
        return tuple(items)

    def action(self, key: str) -> Action:
        v = self.text(key)
        try:
            return Action(v)
        except ValueError:
            raise self._bad(key, f"one of {', '.join(a.value for a in Action)}") from None

    def valid_uuid(self, key: str = "uuid") -> VmUuid | None:
        """`vm_uuid(key)`, or None when it is refused (`RefusedValue`)."""
        try:
            return self.vm_uuid(key)
        except RefusedValue:
            return None

    def observation(self, node: NodeName) -> Observation:
        return Observation(
            uuid=self.vm_uuid("uuid"),
            node=node,
            state=self.opt_text("state"),
            change_time=self.number("change_time"),
            vm=self.vm_object("vm"),
        )

    def observations(self, key: str, node: NodeName
                     ) -> tuple[tuple[Observation, ...], tuple[LeftOut, ...]]:
        """The observations of `key`, and the items left out of them: an item with a value
        the daemon could not keep (`RefusedValue`) is left out, not the message refused, as
        the items are independent (other VMs, or a VM's successive states): one bad VM must
        not keep its node's other VMs from syncing. A malformed item still fails the whole
        message (`ProtocolError`: a bug)."""
        out, left = [], []
        for item in self.array(key):
            if not isinstance(item, dict):
                raise self._bad(key, "a list of objects")
            f = Fields(item, f"{self._kind} {key}[]")
            try:
                out.append(f.observation(node))
            except RefusedValue as exc:
                left.append(LeftOut(f.valid_uuid(), str(exc)))
        return tuple(out), tuple(left)
