"""Typed access to the fields of one agent-protocol message, with one-line errors.

Split from `vmd.bus.agent_messages` (which says what each message holds) so that the
schemas stay readable: this is only how a decoded JSON object is checked field by field.
"""

from __future__ import annotations

from typing import Any

from vmd.model import Action, JsonObject, NodeName, Observation, VmUuid


class ProtocolError(ValueError):
    """An agent-protocol message that does not match its schema."""


class Fields:
    """Typed access to one message's fields, with one-line errors naming kind and field."""

    def __init__(self, value: JsonObject, kind: str) -> None:
        self._value = value
        self._kind = kind

    def _bad(self, key: str, what: str) -> ProtocolError:
        return ProtocolError(f"{self._kind} message: {key!r} must be {what}")

    def text(self, key: str, *, empty: bool = False) -> str:
        v = self._value.get(key)
        if not isinstance(v, str) or not (v or empty):
            raise self._bad(key, "a string" if empty else "a non-empty string")
        return v

    def opt_text(self, key: str) -> str | None:
        v = self._value.get(key)
        if v is not None and not isinstance(v, str):
            raise self._bad(key, "a string or null")
        return v

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
        return tuple(items)

    def action(self, key: str) -> Action:
        v = self.text(key)
        try:
            return Action(v)
        except ValueError:
            raise self._bad(key, f"one of {', '.join(a.value for a in Action)}") from None

    def observations(self, key: str, node: NodeName) -> tuple[Observation, ...]:
        out = []
        for item in self.array(key):
            if not isinstance(item, dict):
                raise self._bad(key, "a list of objects")
            f = Fields(item, f"{self._kind} {key}[]")
            out.append(
                Observation(
                    uuid=VmUuid(f.text("uuid")),
                    node=node,
                    state=f.opt_text("state"),
                    change_time=f.number("change_time"),
                    vm=f.opt_obj("vm"),
                )
            )
        return tuple(out)
