"""pydantic's validation errors, as the one-line problems `vmd check` prints.

Why this module exists: an operator reads `vmd.toml: [agent] start_dealine: unknown key
(did you mean start_deadline?)`, not a location tuple. Each error's location is walked
through the schema (vmd.settings.schema) to find its table (`[agent.ssh]`) and key, and
the key's annotated type says what the value must be; the value shown is the file's own
(`got ...`), except for fields declared `repr=False` (a password, an API key), whose
values and keys never appear in a message.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args, get_origin

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from vmd.settings.schema import Sections

_TOP = "the file"


class Place(NamedTuple):
    """Where an error is: the tables walked (("agent", "ssh")), then the key in the last."""

    tables: tuple[str, ...]
    key: str | None  # None: the table itself is wrong
    kind: Any  # the key's annotated type (None for an unknown key)
    known: tuple[str, ...]  # the keys the last table may hold
    secret: bool  # a repr=False field: its value (and a table's keys) are never shown
    item: tuple[int | str, ...] = ()  # within the key's value: a list's index, ...
    entry: bool = False  # `key` is an entry of a table of names ([auth.owners], [api.keys])


def lines(path: Path, error: ValidationError, raw: dict[str, Any]) -> list[str]:
    """One line per problem (in the schema's order of sections and keys), without repeats."""
    out: list[str] = []
    for detail in error.errors():
        line = f"{path}: {_describe_error(detail, raw)}"
        if line not in out:
            out.append(line)
    return out


def _describe_error(detail: Any, raw: dict[str, Any]) -> str:
    place = locate(tuple(detail["loc"]))
    table = f"[{'.'.join(place.tables)}]" if place.tables else ""
    if place.kind is None:  # a name the table has no field for
        return _unknown(place, raw)
    if place.key is None:
        return f"{table} must be a table"
    where = f"{table} {_key_text(place)}" if table else place.key
    if detail["type"] == "missing":
        return f"{where}: missing (required)"
    got = place.key if place.item[:1] == ("[key]",) else _raw_at(raw, place)
    if detail["type"] == "value_error":
        # A validator's own words; within a list, about one item of it.
        ctx = detail.get("ctx") or {}
        text = str(ctx.get("error", detail["msg"]))
        indexes = [i for i in place.item if isinstance(i, int)]
        if indexes:
            where += f"[{indexes[0]}]"
            got = detail.get("input")
    else:
        text = f"must be {what(place.kind)}"
    if not place.secret:
        text += f" (got {_short(got)})"
    return f"{where}: {text}"


def _key_text(place: Place) -> str:
    key = place.key or ""
    if not place.entry:
        return key
    if place.secret and len(key) > 4:  # an API key shows its first 4 characters only
        return f"{key[:4]}..."
    return key or '""'


def _unknown(place: Place, raw: dict[str, Any]) -> str:
    name = place.key or ""
    value = _raw_at(raw, place)
    close = difflib.get_close_matches(name, place.known, n=1, cutoff=0.6)
    if isinstance(value, dict):
        dotted = ".".join((*place.tables, name))
        hint = f" (did you mean [{'.'.join((*place.tables, close[0]))}]?)" if close else ""
        return f"[{dotted}]: unknown {'section' if not place.tables else 'table'}{hint}"
    hint = f" (did you mean {close[0]}?)" if close else ""
    if not place.tables:
        return (f"{name}: a key outside any section: keys go in a section "
                f"({', '.join(f'[{k}]' for k in place.known)}){hint}")
    return f"[{'.'.join(place.tables)}] {name}: unknown key{hint}"


def locate(loc: tuple[int | str, ...]) -> Place:
    """Walk `loc` (pydantic's error location) through the schema's tables."""
    kind: Any = Sections
    tables: list[str] = []
    secret = False
    for at, item in enumerate(loc):
        base = _bare(kind)
        if dataclasses.is_dataclass(base) and isinstance(base, type):
            hints, hidden = _fields(base)
            known = tuple(hints)
            if item not in hints:
                return Place(tuple(tables), str(item), None, known, secret)
            name = str(item)
            secret = name in hidden
            inner = _bare(hints[name])
            if not _is_table(inner):
                rest = loc[len(tables) + 1:]
                return Place(tuple(tables), name, hints[name], known, secret, rest)
            tables.append(name)
            kind = hints[name]
        elif get_origin(base) is dict:
            # A table of names (`[auth.owners]`, `[api.keys]`): `item` is one of its keys;
            # a secret one (an API key) shows its first 4 characters only.
            # pydantic marks an error about the key itself (not its value) with "[key]".
            rest = loc[at + 1:]
            kind = get_args(base)[0 if rest[:1] == ("[key]",) else 1]
            return Place(tuple(tables), str(item), kind, (), secret, rest, entry=True)
        else:  # pragma: no cover - the schema has no other tables
            break
    return Place(tuple(tables), None, kind, (), secret)


@cache
def _fields(cls: type) -> tuple[dict[str, Any], frozenset[str]]:
    hints = typing.get_type_hints(cls, include_extras=True)
    names = [f.name for f in dataclasses.fields(cls)]
    hidden = frozenset(f.name for f in dataclasses.fields(cls) if not f.repr)
    return {name: hints[name] for name in names}, hidden


def _is_table(kind: Any) -> bool:
    return (dataclasses.is_dataclass(kind) and isinstance(kind, type)) or get_origin(kind) is dict


def _bare(kind: Any) -> Any:
    """The type without its Annotated metadata and without `| None` (TOML has no null)."""
    while True:
        if get_origin(kind) is typing.Annotated:
            kind = get_args(kind)[0]
        elif get_origin(kind) in (typing.Union, types.UnionType):
            rest = [arg for arg in get_args(kind) if arg is not type(None)]
            kind = rest[0]
        else:
            return kind


def _metadata(kind: Any) -> list[Any]:
    out: list[Any] = []
    while True:
        if get_origin(kind) is typing.Annotated:
            out.extend(kind.__metadata__)
            kind = get_args(kind)[0]
        elif get_origin(kind) in (typing.Union, types.UnionType):
            kind = next(arg for arg in get_args(kind) if arg is not type(None))
        else:
            return out


def _constraints(kind: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in _metadata(kind):
        parts = item.metadata if isinstance(item, FieldInfo) else [item]
        for part in parts:  # annotated_types' Ge, Gt, Le, MinLen: one attribute each
            for name in ("ge", "gt", "le", "min_length"):
                if getattr(part, name, None) is not None:
                    found[name] = getattr(part, name)
        if isinstance(item, FieldInfo) and item.description:
            found["description"] = item.description
    return found


_NOUNS = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}


def what(kind: Any) -> str:
    """What a value of `kind` must be, in words: "an integer >= 1", "a list of strings"."""
    c = _constraints(kind)
    if "description" in c:
        return str(c["description"])
    base = _bare(kind)
    origin = get_origin(base)
    if origin is Literal:
        return "one of " + ", ".join(str(arg) for arg in get_args(base))
    if origin in (tuple, frozenset, list):
        noun = _NOUNS.get(_bare(get_args(base)[0]), "value")
        return f"a list of {'non-empty ' if noun == 'string' else ''}{noun}s"
    if origin is dict or dataclasses.is_dataclass(base):
        return "a table"
    noun = _NOUNS.get(base, getattr(base, "__name__", "value"))
    if noun == "string" and c.get("min_length"):
        noun = "non-empty string"
    text = f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
    if "ge" in c and "le" in c:
        return f"{text} from {c['ge']} to {c['le']}"
    for name, sign in (("ge", ">="), ("gt", ">"), ("le", "<=")):
        if name in c:
            text += f" {sign} {c[name]}"
    return text


def _raw_at(raw: dict[str, Any], place: Place) -> Any:
    value: Any = raw
    for name in (*place.tables, place.key):
        if not isinstance(value, dict) or name not in value:
            return None
        value = value[name]
    return value


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
