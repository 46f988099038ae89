"""Benchmark: psycopg 3 against asyncpg on the store's own work, to choose the PostgreSQL driver.

Issue 14 asks for the driver to be chosen by measurement. The store's work is two things:

(a) a turn: ONE transaction with N VM upserts (the 15-column `vms` row), N outbox inserts
    (the turn's events), the delete of the previous turn's outbox range (the broker
    confirmed it) and one idempotency upsert, committed and waited for (the daemon acks
    only after it). Measured for N = 1, 10, 100, each turn timed, sequentially (the
    daemon has one writer: turns never overlap).
(b) a restore: every VM row read back in one read transaction (100,000 by default).

Candidates, on a fresh database of the local server (127.0.0.1:5432, user postgres):
- `psycopg Store`: vmd's own `Store.write(Batch)` / `Store.load_fleet` (psycopg 3 sync,
  pipelined `executemany`, a server-side cursor for the restore): what vmd ships, with
  the row encoding and the `?` translation included;
- `psycopg raw`: the same statements with psycopg directly, rows prebuilt;
- `asyncpg raw`: the same statements with asyncpg on its own event loop (prepared
  statements, `executemany`), rows prebuilt; for the restore `fetch` (all rows at once)
  and a cursor with the same prefetch as the store's server-side cursor.
SQLite's `Store.write` runs the same turns as the reference the daemon has today.

The rounds alternate the candidates (`--rounds`) so that the noise of a shared machine
falls on all of them; the table shows the median of the per-round medians.

    .venv/bin/python bench/store_drivers.py [--turns 200] [--rounds 3] [--vms 100000]
    .venv/bin/python bench/store_drivers.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import percentile, print_machine, print_table

from vmd.model import NodeName, Vm, VmStatus, VmUuid
from vmd.store import Batch, IdempotencyRecord, OutboxMessage, Store
from vmd.store.outbox import DELETE_SQL, INSERT_SQL, outbox_row
from vmd.store.rows import IDEMPOTENCY, VMS, idempotency_row, vm_row

SERVER = "postgresql://postgres@127.0.0.1:5432"


def _vm(i: int, seq: int) -> Vm:
    return Vm(VmUuid(f"{i:08x}-0000-4000-8000-{i:012x}"), f"vm{i}.example.com", f"vm{i}",
              f"owner-{i % 7}", NodeName(f"cn{i % 50:02d}.example.com"), "kvm", "linux",
              VmStatus.RUNNING if seq % 2 else VmStatus.STOPPED, 1.8e9 + seq, 1.8e9 + seq,
              {"ram": 2048, "vcpus": 2, "disks": [{"size": 10240}]}, None, 0, None, seq)


def _event(n: int) -> OutboxMessage:
    return OutboxMessage(n, "event", "vmd.events", f"vm.o.{n}.status_change",
                         b'{"seq":%d,"status":"running","vm_uuid":"x"}' % n)


def _record(t: int) -> IdempotencyRecord:
    from vmd.model import Reply

    return IdempotencyRecord("alice", f"m{t}", (Reply(201, {"task_id": f"0-{t}"}),), 1.8e9)


class Turns:
    """The rows of turn `t` of size `n`: n VMs (seq t), n events, the previous range."""

    def __init__(self, n: int) -> None:
        self.n = n

    def batch(self, t: int) -> Batch:
        batch = Batch()
        for i in range(self.n):
            batch.put_vm(_vm(i, t))
            batch.put_outbox(_event(t * self.n + i))
        if t:
            batch.delete_outbox((t - 1) * self.n, t * self.n - 1)
        batch.put_idempotency(_record(t))
        return batch

    def rows(self, t: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]],
                                    tuple[int, int] | None, tuple[Any, ...]]:
        vms = [vm_row(_vm(i, t)) for i in range(self.n)]
        events = [outbox_row(_event(t * self.n + i)) for i in range(self.n)]
        gone = ((t - 1) * self.n, t * self.n - 1) if t else None
        return vms, events, gone, idempotency_row(_record(t))


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


def _dollar(sql: str) -> str:
    parts = sql.split("?")
    return "".join(p + (f"${i + 1}" if i < len(parts) - 1 else "")
                   for i, p in enumerate(parts))


@contextmanager
def database() -> Iterator[str]:
    name = f"vmd_bench_{secrets.token_hex(5)}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{SERVER}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE vms, outbox, idempotency, tasks, nodes, history")


# --- (a) turns ------------------------------------------------------------------------------

def turns_store(target: str | Path, n: int, count: int) -> list[float]:
    turns, times = Turns(n), []
    with Store.open(target) as store:
        for t in range(count):
            start = time.perf_counter()
            store.write(turns.batch(t))  # encoding included: the daemon encodes per turn too
            times.append(time.perf_counter() - start)
    return times


def turns_psycopg(url: str, n: int, count: int) -> list[float]:
    turns, times = Turns(n), []
    prepared = [turns.rows(t) for t in range(count)]
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        for vms, events, gone, key in prepared:
            start = time.perf_counter()
            with conn.pipeline():
                _turn_psycopg(cur, vms, events, gone, key)
            times.append(time.perf_counter() - start)
    return times


def _turn_psycopg(cur: psycopg.Cursor[Any], vms: list[tuple[Any, ...]],
                  events: list[tuple[Any, ...]], gone: tuple[int, int] | None,
                  key: tuple[Any, ...]) -> None:
    """One turn in one pipeline: BEGIN .. COMMIT leave together, one round trip."""
    cur.execute("BEGIN")
    cur.executemany(_pg(VMS.upsert_sql), vms)
    if gone:
        cur.execute(_pg(DELETE_SQL), gone)
    cur.executemany(_pg(INSERT_SQL), events)
    cur.execute(_pg(IDEMPOTENCY.upsert_sql), key)
    cur.execute("COMMIT")


async def _turns_asyncpg(url: str, n: int, count: int) -> list[float]:
    turns, times = Turns(n), []
    prepared = [turns.rows(t) for t in range(count)]
    conn = await asyncpg.connect(url)
    try:
        for vms, events, gone, key in prepared:
            start = time.perf_counter()
            async with conn.transaction():
                await conn.executemany(_dollar(VMS.upsert_sql), vms)
                if gone:
                    await conn.execute(_dollar(DELETE_SQL), *gone)
                await conn.executemany(_dollar(INSERT_SQL), events)
                await conn.execute(_dollar(IDEMPOTENCY.upsert_sql), *key)
            times.append(time.perf_counter() - start)
    finally:
        await conn.close()
    return times


def turns_asyncpg(url: str, n: int, count: int) -> list[float]:
    return asyncio.run(_turns_asyncpg(url, n, count))


# --- (b) restore ----------------------------------------------------------------------------

def fill(url: str, vms: int) -> None:
    with Store.open(url) as store:
        for first in range(0, vms, 10_000):
            batch = Batch()
            for i in range(first, min(vms, first + 10_000)):
                batch.put_vm(_vm(i, 1))
            store.write(batch)


def restore_store(url: str) -> int:
    with Store.open(url) as store:
        return len(store.load_fleet(1.8e9).vms)


def restore_psycopg(url: str) -> int:
    with psycopg.connect(url) as conn:
        return len(conn.execute(VMS.select_sql).fetchall())


async def _restore_asyncpg(url: str, cursor: bool) -> int:
    conn = await asyncpg.connect(url)
    try:
        if not cursor:
            return len(await conn.fetch(VMS.select_sql))
        count = 0
        async with conn.transaction():
            async for _ in conn.cursor(VMS.select_sql, prefetch=10_000):
                count += 1
        return count
    finally:
        await conn.close()


def timed(fn: Callable[[], int]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200, help="turns per size and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--vms", type=int, default=100_000, help="VMs of the restore")
    parser.add_argument("--quick", action="store_true", help="a smoke run (seconds)")
    args = parser.parse_args()
    if args.quick:
        args.turns, args.rounds, args.vms, args.sizes = 20, 1, 5_000, [1, 10]
    print_machine("store drivers: psycopg 3 against asyncpg (bench/store_drivers.py)")
    print(f"   psycopg {psycopg.__version__} (libpq {psycopg.pq.version()}), asyncpg "
          f"{asyncpg.__version__}; {args.turns} turns x {args.rounds} rounds per size\n")

    with database() as url, tempfile.TemporaryDirectory() as tmp:
        Store.open(url).close()
        runners: dict[str, Callable[[int, int], list[float]]] = {
            "psycopg Store": lambda n, c: turns_store(url, n, c),
            "psycopg raw": lambda n, c: turns_psycopg(url, n, c),
            "asyncpg raw": lambda n, c: turns_asyncpg(url, n, c),
            "sqlite Store": lambda n, c: turns_store(Path(tmp) / f"s{n}.sqlite3", n, c),
        }
        results: dict[tuple[str, int], list[list[float]]] = {}
        for _ in range(args.rounds):
            for n in args.sizes:
                for name, run in runners.items():
                    _reset(url)
                    (Path(tmp) / f"s{n}.sqlite3").unlink(missing_ok=True)
                    results.setdefault((name, n), []).append(sorted(run(n, args.turns)))
        rows = []
        for (name, n), per_round in results.items():
            p50 = statistics.median(percentile(r, 0.5) for r in per_round) * 1e3
            p99 = statistics.median(percentile(r, 0.99) for r in per_round) * 1e3
            rows.append([name, n, p50, p99, 1e3 / p50])
        rows.sort(key=lambda r: (r[1], r[0]))
        print("(a) one turn = one transaction: N VM upserts + N outbox rows + 1 outbox range "
              "delete + 1 idempotency row, committed")
        print_table(["driver", "N", "p50 ms", "p99 ms", "turns/s (1/p50)"], rows)

        _reset(url)
        fill(url, args.vms)
        readers: dict[str, Callable[[], int]] = {
            "psycopg Store.load_fleet (server cursor, Vm built)": lambda: restore_store(url),
            "psycopg fetchall (tuples)": lambda: restore_psycopg(url),
            "asyncpg fetch (Records)": lambda: asyncio.run(_restore_asyncpg(url, False)),
            "asyncpg cursor, prefetch 10000": lambda: asyncio.run(_restore_asyncpg(url, True)),
        }
        spent: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, read in readers.items():
                spent.setdefault(name, []).append(timed(read))
        print(f"\n(b) restore: every VM row of {args.vms:,} in one read")
        print_table(["reader", "seconds (median)", "rows/s"],
                    [[name, statistics.median(s), args.vms / statistics.median(s)]
                     for name, s in spent.items()])


if __name__ == "__main__":
    main()
