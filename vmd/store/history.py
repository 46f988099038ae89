"""The power history table: one row per applied status change, read newest first.

Written by `Store.write` in the transaction of the change itself (the daemon adds each
change of a turn to its `Batch`), so the history never misses a change vmd published nor
holds one it did not make, and it survives any restart with the rest of the store.

Kept per VM for a count and a time (`[daemon] history_keep`, `history_retention`):
- the count is kept at write time: inserting seq N of a VM deletes its entries up to
  N - keep, one index range per change, so no scan ever looks for VMs over their count
  (seqs of a VM grow by one per change: the entries kept are exactly the last `keep`);
- the time is enforced by `purge`, a bounded DELETE (`PURGE_BATCH` rows at a time, each
  call its own short transaction in the writer thread) by `recorded`, vmd's clock at the
  write; the housekeeping calls it until it deletes less than a batch, so turns' writes
  queued meanwhile run between two batches and the loop never waits on a long purge.
"""

from __future__ import annotations

from vmd.fsm.decision import StatusChange
from vmd.fsm.history import HistoryEntry
from vmd.model import VmUuid
from vmd.store.dialect import Connection
from vmd.store.rows import HISTORY, Row

# An upsert: a change is written once; should a seq come again (a store restored from an
# older backup), the newer row wins instead of failing the whole turn. (It was
# INSERT OR REPLACE, which PostgreSQL lacks; with no other unique key and no trigger on
# the table the two do the same.)
INSERT_SQL = HISTORY.upsert_sql
TRIM_SQL = "DELETE FROM history WHERE vm_uuid = ? AND seq <= ?"
_COLUMNS = "seq, status, previous, status_change, cause, task_id, principal"
_READ_SQL = f"SELECT {_COLUMNS} FROM history WHERE vm_uuid = ? ORDER BY seq DESC LIMIT ?"
_READ_BEFORE_SQL = (f"SELECT {_COLUMNS} FROM history WHERE vm_uuid = ? AND seq < ? "
                    "ORDER BY seq DESC LIMIT ?")
# Rows picked by their physical address (SQLite's rowid, PostgreSQL's ctid): neither has
# DELETE ... LIMIT, and the address is the cheapest way back to the rows the index found.
_PURGE_SQL = ("DELETE FROM history WHERE {id} IN "
              "(SELECT {id} FROM history WHERE recorded < ? LIMIT ?)")
PURGE_BATCH = 5000


def history_row(c: StatusChange, recorded: float) -> Row:
    return (c.vm.uuid, c.seq, c.status.value, c.previous.value, c.time, c.cause.value,
            c.task_id, c.principal, recorded)


def trim_keys(rows: list[Row], keep: int) -> list[tuple[str, int]]:
    """(vm_uuid, last seq to delete) for the rows just written, keeping `keep` per VM."""
    last: dict[str, int] = {}
    for row in rows:
        uuid, seq = row[0], row[1]
        if seq > last.get(uuid, 0):
            last[uuid] = seq
    return [(uuid, seq - keep) for uuid, seq in last.items() if seq > keep]


def read(conn: Connection, vm_uuid: VmUuid, limit: int,
         before: int | None) -> list[HistoryEntry]:
    if before is None:
        rows = conn.execute(_READ_SQL, (vm_uuid, limit))
    else:
        rows = conn.execute(_READ_BEFORE_SQL, (vm_uuid, before, limit))
    return [HistoryEntry(*row) for row in rows]


def purge(conn: Connection, cutoff: float, limit: int) -> int:
    """Delete up to `limit` entries recorded before `cutoff` (the caller's transaction)."""
    return conn.execute(_PURGE_SQL.format(id=conn.row_id), (cutoff, limit)).rowcount
