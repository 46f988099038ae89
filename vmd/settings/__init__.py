"""The settings schema: each section of a vmd settings file described once, as typed fields.

`validate(path, document)` turns a parsed TOML document into the typed records the
processes run on (vmd.settings.schema), and every problem of it into one line each,
`<file>: [section] key: what is wrong (got ...)`; `vmd.config` reads the file and calls it.

Why pydantic (2.x) and not msgspec: both validate a dict into typed classes with strict
scalars, ranges and unknown-field errors, and msgspec is the lighter one (one wheel of
~0.7 MB, no dependencies, ~20 ms to import, against pydantic's ~10 MB in four wheels and
~110-170 ms for its import and this schema's validator, measured on 2 shared cores).
But msgspec stops at the first error, and `vmd check` must list every problem of a file
at once (like `nginx -t`): with msgspec the key-by-key loop this schema replaces would
come back. pydantic collects every error with a structured location
(`("agent", "ssh", "port")`) and the constraint that failed, which vmd.settings.problems
turns into lines; and it validates stdlib dataclasses, so the records stay the frozen
dataclasses the rest of vmd already uses, with no validation cost where code builds them.
The import is paid once by each long-running process (vmctl and the client never load it).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from vmd.settings import problems, rules
from vmd.settings.schema import Sections


@cache
def _adapter() -> TypeAdapter[Sections]:
    # Built on first use (~50 ms here), not at import: code that only needs the records
    # (the daemon's modules, tests) does not pay for it.
    return TypeAdapter(Sections)


def validate(path: Path, document: dict[str, Any], *, sections: tuple[str, ...] = ()
             ) -> tuple[Sections | None, list[str]]:
    """The file's sections and its problems (each line starts with `path`); the sections
    are None when any problem was found. `sections` names the sections the caller's
    process requires (e.g. ("broker", "daemon"))."""
    found: list[str] = []
    parsed: Sections | None = None
    try:
        parsed = _adapter().validate_python(document)
    except ValidationError as exc:
        found.extend(problems.lines(path, exc, document))
    found.extend(f"{path}: {line}" for line in rules.problems(document))
    found.extend(f"{path}: [{name}] missing (required)" for name in sections
                 if name not in document)
    found.extend(f"{path}: {line}" for line in rules.required_tables(document))
    return (None if found else parsed), found
