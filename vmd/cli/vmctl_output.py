"""What vmctl prints: es's JSON object, or a table (VM statuses, a power history), and the
exit code.

The JSON is es's default output (`bin/es` `output_json`) with `path` in place of `url`:
`{"method", "path", "status": <final code>, "text": <reply body>}`, indented by 4. `text` is
the upstream API's body, i.e. vmd's reply without its `code` (which is `status`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from vmd.model import Reply

TABLE_COLUMNS = ("hostname", "uuid", "alias", "status", "status_change", "node_status", "tasks")
# `GET /vm/<vm>/status/history`, newest first.
HISTORY_COLUMNS = ("seq", "status_change", "previous", "status", "cause", "principal", "task_id")


def exit_code(code: int) -> int:
    """es's rule: 0 below 400, 1 for 4xx, 2 from 500 on."""
    if code < 400:
        return 0
    if code < 500:
        return 1
    return 2


def render_json(method: str, path: str, reply: Reply) -> str:
    out = {"method": method, "path": path, "status": reply.code, "text": reply.body}
    return json.dumps(out, indent=4)


def _cell(column: str, value: Any) -> str:
    if column == "tasks":
        # The pending tasks of the VM: their count is what fits in a column.
        return str(len(value)) if isinstance(value, dict | list) else "0"
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value)


def _rows(reply: Reply) -> list[dict[str, Any]] | None:
    result = reply.body.get("result")
    if isinstance(result, dict) and "hostname" in result and "status" in result:
        return [result]
    if isinstance(result, list) and all(isinstance(row, dict) for row in result):
        return result
    return None


def format_table(rows: Sequence[dict[str, Any]],
                 columns: Sequence[str] = TABLE_COLUMNS) -> str:
    """Aligned columns with a header (an empty list gives the header alone)."""
    cells = [[_cell(c, row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[k]) for r in cells)]) for k, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    out = [line(columns), line(["-" * w for w in widths])]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def render_table(reply: Reply, path: str = "") -> str | None:
    """The reply's VM statuses (or, for a `.../status/history` path, its power history) as
    a table, or None when it holds none (errors, tasks)."""
    rows = _rows(reply)
    if rows is None:
        return None
    history = path.rstrip("/").endswith("/status/history") or (
        bool(rows) and "seq" in rows[0] and "cause" in rows[0])
    return format_table(rows, HISTORY_COLUMNS if history else TABLE_COLUMNS)
