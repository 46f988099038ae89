"""The `changes` of a vminfod `modify` event (SmartOS diff.js; docs/simulator.md, events).

Objects are walked key by key (removed keys first in `old` order, then nested and
changed ones, then added keys in `new` order); arrays are compared as sets of their
JSON serialisations, with `null` in `path` and `*` in `prettyPath` for "some
element"; the top-level arrays `disks` and `nics` match elements by `path` and `mac`
and report in-place changes with an `ident`. `last_modified` is never reported:
vminfod bumps it silently with every other change.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Json = dict[str, Any]
    Path = list[str | None]

DIFF_MAP = {"disks": "path", "nics": "mac"}
SILENT = ("last_modified",)


def diff(old: Json, new: Json) -> list[Json]:
    a = {k: v for k, v in old.items() if k not in SILENT}
    b = {k: v for k, v in new.items() if k not in SILENT}
    return _obj_diff(a, b, [])


def _same(a: Any, b: Any) -> bool:
    # JavaScript's === on values parsed from JSON: identical primitives only;
    # two distinct objects are never "the same" at this level (they recurse).
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    return type(a) is type(b) and a == b


def _pretty(path: Path) -> str:
    s = ""
    for elem in path:
        e = "*" if elem is None else str(elem)
        if any(c in e for c in ".[]"):
            e = e.replace("[", "\\[").replace("]", "\\]")
            s += "[" + e + "]"
            continue
        if s:
            s += "."
        s += e
    return s


def _change(path: Path, action: str, old: Any = None, new: Any = None, **extra: Any) -> Json:
    c: Json = {"prettyPath": _pretty(path), "path": path, "action": action}
    if action in ("removed", "changed"):
        c["oldValue"] = old
    if action in ("added", "changed"):
        c["newValue"] = new
    c.update(extra)
    return c


def _obj_diff(a: Json, b: Json, prefix: Path) -> list[Json]:
    changes: list[Json] = []
    for key, av in a.items():
        path = [*prefix, key]
        if key not in b:
            changes.append(_change(path, "removed", old=av))
            continue
        bv = b[key]
        if _same(av, bv):
            continue
        if isinstance(av, list) and isinstance(bv, list):
            changes.extend(_array_diff(av, bv, path, key if not prefix else None))
        elif isinstance(av, dict) and isinstance(bv, dict):
            changes.extend(_obj_diff(av, bv, path))
        elif isinstance(av, (dict, list)) or isinstance(bv, (dict, list)):
            if json.dumps(av, sort_keys=True) != json.dumps(bv, sort_keys=True):
                changes.append(_change(path, "changed", old=av, new=bv))
        else:
            changes.append(_change(path, "changed", old=av, new=bv))
    for key, bv in b.items():
        if key not in a:
            changes.append(_change([*prefix, key], "added", new=bv))
    return changes


def _array_diff(a: list[Any], b: list[Any], prefix: Path, key: str | None) -> list[Json]:
    path: Path = [*prefix, None]
    ident_key = DIFF_MAP.get(key) if key is not None else None
    a_ser = [json.dumps(x, ensure_ascii=False, separators=(",", ":")) for x in a]
    b_ser = [json.dumps(x, ensure_ascii=False, separators=(",", ":")) for x in b]
    removed = [i for i, s in enumerate(a_ser) if s not in b_ser]
    added = [j for j, s in enumerate(b_ser) if s not in a_ser]
    modified: list[tuple[Json, Json, Any]] = []
    if ident_key is not None:
        still_removed = []
        for i in removed:
            oi = a[i]
            match = None
            if isinstance(oi, dict):
                for j in added:
                    oj = b[j]
                    if isinstance(oj, dict) and oi.get(ident_key) == oj.get(ident_key):
                        match = j
                        break
            if match is None:
                still_removed.append(i)
            else:
                added.remove(match)
                modified.append((oi, b[match], oi.get(ident_key)))
        removed = still_removed
    changes = [_change(path, "removed", old=a[i]) for i in removed]
    for oi, oj, ident in modified:
        for c in _obj_diff(oi, oj, path):
            c["ident"] = ident
            changes.append(c)
    changes.extend(_change(path, "added", new=b[j]) for j in added)
    return changes
