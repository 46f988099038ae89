"""What vmctl prints: es's JSON object, es's `--csv` and `--tabulate[-fmt]` tables, or
vmctl's own `--table` (VM statuses, a power history), and the exit code.

The JSON is es's default output (`bin/es` `output_json`) with `path` in place of `url`:
`{"method", "path", "status": <final code>, "text": <reply body>}`, indented by 4. `text` is
the upstream API's body, i.e. vmd's reply without its `code` (which is `status`).
`--csv` and `--tabulate[-<fmt>]` are es's `output_csv`/`output_tabulate` on that same
status and text (`es_table` says what becomes a row), printed by the same `tabulate`
library, so a script that reads es's tables reads vmctl's.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from tabulate import tabulate, tabulate_formats

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


# -- es's --csv and --tabulate[-fmt] (`bin/es` output_tabulate, output_csv) ------------------

# es's CSV dialect (its CSV_DELIMITER and CSV_QUOTING settings): `;`, minimal quoting and
# the csv module's default CRLF line ends.
CSV_DELIMITER = ";"
TABULATE_FORMATS: tuple[str, ...] = tuple(tabulate_formats)
# Every `--<name>` that selects an output: es's, plus vmctl's own `table`.
OUTPUT_FORMATS: frozenset[str] = frozenset(
    {"json", "table", "csv", "tabulate", "tabulate-csv",
     *(f"tabulate-{fmt}" for fmt in TABULATE_FORMATS)})


def _normalize(item: Any) -> Any:
    """A cell as es writes it: a dict as `k: v,k: v`, a list as `a,b`, the rest as is."""
    if isinstance(item, dict):
        return ",".join(f"{k}: {v}" for k, v in item.items())
    if isinstance(item, list | tuple):
        return ",".join(str(x) for x in item)
    return item


def es_table(status: int, text: Any) -> tuple[list[Sequence[Any]], list[str]] | str:
    """What es tabulates of an answer: (rows, headers), or the text it prints as is.

    A 2xx answer shows its `result` (or `results`); anything else shows the body. A dict
    becomes key/value rows without headers, a list of dicts one row per item under the
    first item's keys, a list of scalars one column; anything else (a task's `null`
    result, a string) is printed as Python prints it, as es does.
    """
    if 199 < status < 300 and isinstance(text, dict):
        if "result" in text:
            text = text["result"]
        elif "results" in text:
            text = text["results"]
    if isinstance(text, dict):
        return [(k, _normalize(v)) for k, v in text.items()], []
    if not isinstance(text, list):
        return str(text)
    if not text:
        return [], []
    first = text[0]
    if isinstance(first, dict):
        rows: list[Sequence[Any]] = [
            [_normalize(v) for v in row.values()] if isinstance(row, dict) else [row]
            for row in text]
        return rows, [str(k) for k in first]
    if isinstance(first, list):
        return [row if isinstance(row, list) else [row] for row in text], []
    return [(x,) for x in text], []


def render_es(fmt: str, reply: Reply) -> str:
    """`--csv`, `--tabulate` or `--tabulate-<fmt>`: es's output of the reply, exactly as es
    writes it (a table and a text end with a newline, CSV rows each with CRLF)."""
    table = es_table(reply.code, reply.body)
    if isinstance(table, str):
        return table + "\n"
    rows, headers = table
    tablefmt = fmt.removeprefix("tabulate-") if fmt.startswith("tabulate-") else "simple"
    if fmt in ("csv", "tabulate-csv"):
        out = io.StringIO()
        writer = csv.writer(out, delimiter=CSV_DELIMITER, quoting=csv.QUOTE_MINIMAL)
        if headers:
            writer.writerow(headers)
        writer.writerows(rows)
        return out.getvalue()
    return str(tabulate(rows, headers=headers, tablefmt=tablefmt)) + "\n"
