"""`GET /vm/status` (docs/fsm.md §3.1) in steps: one snapshot, one sort, then slices.

Why steps: at 100,000 VMs the list costs ~0.3 s of CPU (2-3 µs to render each VM's object),
and the event loop must not stop that long (issue 12: heartbeats, the watchdog and every
other request would wait). The daemon (vmd.daemon.listing) renders a big list one slice
per loop turn; a small one is rendered at once (`list_status` in vmd.fsm.requests).

What the answer shows is still one moment: `StatusList()` copies, in one synchronous step,
what the list shows of every VM the principal may see (one tuple per VM, `render.vm_row`:
~15 ms at 100k), every node's status and every pending task. The sort and the slices read
only that copy, so decisions taken between two slices do not reach this answer (they are
in the next one), and the order is the order of what is shown.

`order_by` (params.parse_order_by: each field at most once) becomes one composite key,
compared in C: a string field descending is replaced by its negated rank among the values
present, `status` by the rank of its name, `status_change` by the time (null first
ascending, last descending); the uuid ends every key, so ties break by uuid ascending and
no two keys are equal. The default order (hostname, then uuid) is the tuples' own order.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Mapping, Sequence
from itertools import islice
from operator import itemgetter
from typing import Any

from vmd.fsm import replies
from vmd.fsm.params import OrderBy, parse_order_by
from vmd.fsm.render import Row, node_statuses, row_status_objects, vm_row
from vmd.fsm.world import World
from vmd.model import JsonObject, NodeName, Principal, Reply, Task, VmStatus, VmUuid

_FIELD = {"hostname": 0, "uuid": 1, "alias": 2, "status": 3, "status_change": 4}
_STATUS_RANK = {s: i for i, s in enumerate(sorted(VmStatus, key=lambda s: s.value))}
_STATUS_RANK_DESC = {s: -i for s, i in _STATUS_RANK.items()}
_DEFAULT = [("hostname", False)]
_INVALID_ORDER_BY = replies.error(412, replies.INVALID_ORDER_BY)
# Rows sorted in one step: a few ms (the sort of 100,000 rows at once took 0.13-0.3 s).
CHUNK = 5000
# A string descending: its UTF-8 bytes (code point order; `surrogatepass` keeps a lone
# surrogate an agent may report), each byte b as 0xFE - b (UTF-8 never holds 0xFE/0xFF),
# then 0xFF, so a prefix sorts after the longer strings it starts.
_INVERT = bytes(0xFE - b if b <= 0xFE else 0xFF for b in range(256))
_last = itemgetter(-1)


def _descending(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass").translate(_INVERT) + b"\xff"


def _column(rows: Sequence[Row], name: str, descending: bool) -> list[Any]:
    """One component of the composite key, for every row."""
    i = _FIELD[name]
    if name == "status":
        rank = _STATUS_RANK_DESC if descending else _STATUS_RANK
        return [rank[r[3]] for r in rows]
    if name == "status_change":
        if descending:
            return [math.inf if r[4] is None else -r[4] for r in rows]
        return [-math.inf if r[4] is None else r[4] for r in rows]
    if descending:
        return [_descending(r[i]) for r in rows]  # type: ignore[arg-type]
    return [r[i] for r in rows]


def _run(rows: Sequence[Row], order: OrderBy) -> list[Any]:
    """`rows` sorted: the rows themselves in the default order, else (key..., row) tuples."""
    if order == _DEFAULT:
        return sorted(rows)  # (hostname, uuid, ...): the uuid is unique, so it decides ties
    columns = [_column(rows, name, descending) for name, descending in order]
    if all(name != "uuid" for name, _ in order):
        columns.append([r[1] for r in rows])
    # The uuid makes every key unique: the rows themselves are never compared.
    return sorted(zip(*columns, rows, strict=True))


def sort_rows(rows: Sequence[Row], order: OrderBy) -> list[Row]:
    """`rows` in `order`, in one sort (what `StatusList` does a chunk at a time)."""
    run = _run(rows, order)
    return run if order == _DEFAULT else list(map(_last, run))


class StatusList:
    """One list answer being built: the snapshot now, then `slices()` of bounded work."""

    __slots__ = ("_node_status", "_order", "_pending", "_rows", "task_id")

    def __init__(self, world: World, principal: Principal, order: OrderBy) -> None:
        vms = world.vms if principal.admin else world.vms.owned_by(principal.owner_uuids)
        self._rows: list[Row] = list(map(vm_row, vms))
        self._pending: Mapping[VmUuid, tuple[Task, ...]] = world.tasks.pending_copy()
        self._node_status: Mapping[NodeName, str] = node_statuses(world.nodes)
        self._order = order
        self.task_id = world.new_task_id()

    def __len__(self) -> int:
        return len(self._rows)

    def slices(self, n: int) -> Iterator[list[JsonObject]]:
        """The answer's objects in order, `n` per slice, after one empty slice per sorted
        chunk of `CHUNK` rows (the chunks are merged as the slices are rendered): every
        slice is a few ms of work at most."""
        rows, order = self._rows, self._order
        runs = []
        for i in range(0, len(rows), CHUNK):
            runs.append(_run(rows[i:i + CHUNK], order))
            if len(rows) > CHUNK:
                yield []
        merged = runs[0] if len(runs) == 1 else heapq.merge(*runs)
        ordered: Iterator[Row] = iter(merged) if order == _DEFAULT else map(_last, merged)
        while part := list(islice(ordered, n)):
            yield row_status_objects(part, self._node_status, self._pending)

    def render(self) -> list[JsonObject]:
        """Every object at once (a small list, or a caller that may hold the loop)."""
        return [obj for part in self.slices(max(1, len(self._rows))) for obj in part]

    def reply(self, result: Any) -> Reply:
        """The 200 SUCCESS answer with `result`: the rendered list (or its encoding)."""
        return replies.success(result, self.task_id)


def open_list(world: World, principal: Principal, data: Mapping[str, Any]) -> StatusList | Reply:
    """A list answer for `data` (its snapshot taken now), or the 412 of a bad `order_by`."""
    order = parse_order_by(data.get("order_by"))
    if order is None:
        return _INVALID_ORDER_BY
    return StatusList(world, principal, order)
