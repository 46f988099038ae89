"""Benchmark: fleet scale. A daemon holding N VMs (default 100,000) on 100 nodes.

A store with N realistic VMs is generated through the real write path (`bench/restore.py`'s
generator: 100 nodes, 1000 owners, mixed statuses and brands, pending tasks for the
transitional VMs), copied to a fresh work directory with its times moved to the present (a
restart after a short outage: pending tasks not yet due), and a real `vmd daemon` is started
on it (vhost `vmd-bench`, re-created first; no agents). It prints:

- cold start to ready: from spawning `vmd daemon` to its `READY=1` (systemd notify
  protocol, the moment systemd would consider the unit started), and the daemon's CPU
  seconds up to then;
- resident memory (VmRSS) once ready, and after the list requests (VmHWM = peak);
- `GET /vm/status` as an admin (all N VMs): seconds from publishing the request to the
  reply's arrival at the client (a plain aio-pika client, so the client's JSON decoding is
  not counted; it is printed separately), and the reply's size. Repeated `--repeat` times.

    .venv/bin/python bench/fleet.py            # N = 100,000
    .venv/bin/python bench/fleet.py --quick    # N = 10,000
    .venv/bin/python bench/fleet.py --store postgresql   # the store on PostgreSQL

`--store postgresql`: the fleet is generated into a fresh PostgreSQL database on
127.0.0.1:5432 (created and dropped by the run; the generator writes through `Store.open`
of its URL, so nothing is cached) and the daemon's `[daemon] store` is that URL (its ready
is the second `READY=1`, the active one's, after the standby's); the CPU
of the server process serving the daemon's restore counts as `postgres` next to the
daemon's (docs/ha.md, "Headroom of one active daemon").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import aio_pika.abc

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import restore

TARGET_RSS_MB = 300.0
TARGET_READY_S = 3.0
TARGET_LIST_S = 1.0
REPLY_TO = "amq.rabbitmq.reply-to"


def shift_times(path: Path, delta: float) -> None:
    """Move every time in a generated store by `delta` seconds, so the fleet looks like it
    was stored `delta` seconds after the generator's fixed "now": a daemon restarted after a
    short outage (pending tasks still before their deadlines, nodes' last heartbeats recent),
    not one that must first expire every task of a week-old store."""
    with sqlite3.connect(path) as db:
        db.execute("UPDATE vms SET status_change = status_change + ?1, "
                   "observed_at = observed_at + ?1", (delta,))
        db.execute("UPDATE tasks SET created = created + ?1, deadline = deadline + ?1, "
                   "ended = ended + ?1", (delta,))
        db.execute("UPDATE nodes SET last_heartbeat = last_heartbeat + ?1", (delta,))
        db.execute("UPDATE idempotency SET created = created + ?1", (delta,))
    db.close()


def shift_times_pg(url: str, delta: float) -> None:
    """`shift_times` on a PostgreSQL store."""
    import psycopg

    with psycopg.connect(url) as db:
        db.execute("UPDATE vms SET status_change = status_change + %(d)s, "
                   "observed_at = observed_at + %(d)s", {"d": delta})
        db.execute("UPDATE tasks SET created = created + %(d)s, deadline = deadline + %(d)s, "
                   "ended = ended + %(d)s", {"d": delta})
        db.execute("UPDATE nodes SET last_heartbeat = last_heartbeat + %(d)s", {"d": delta})
        db.execute("UPDATE idempotency SET created = created + %(d)s", {"d": delta})


def store_file(cache: Path, n: int) -> Path:
    """A generated store with n VMs (reused from `cache` when already there)."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"fleet-{n}.sqlite3"
    if path.exists() and not Path(f"{path}-wal").exists():
        print(f"reusing {path}")
        return path
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    took = restore.generate(path, n)
    print(f"generated {path} in {took:.1f} s ({path.stat().st_size / 2**20:.0f} MiB)")
    return path


async def list_all(repeat: int) -> list[tuple[float, float, int, int]]:
    """(seconds to reply, seconds to decode it, bytes, VMs listed) per request."""
    connection = await aio_pika.connect(common.amqp_url("admin"))
    channel = await connection.channel()
    exchange = await channel.get_exchange("vmd.commands")
    replies = await channel.get_queue(REPLY_TO, ensure=False)
    inbox: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        inbox.put_nowait((time.perf_counter(), message.body))

    await replies.consume(on_reply, no_ack=True)
    body = json.dumps({"method": "GET", "path": "/vm/status", "data": {}}).encode()
    out = []
    for _ in range(repeat):
        sent = time.perf_counter()
        await exchange.publish(
            aio_pika.Message(body, correlation_id=uuid.uuid4().hex, message_id=uuid.uuid4().hex,
                             reply_to=REPLY_TO, user_id="admin",
                             content_type="application/json",
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            "command", mandatory=True)
        arrived, data = await asyncio.wait_for(inbox.get(), 120)
        decode_started = time.perf_counter()
        value = json.loads(data)
        decoded = time.perf_counter() - decode_started
        result = value.get("result")
        out.append((arrived - sent, decoded, len(data), len(result) if isinstance(result, list)
                    else -1))
        await asyncio.sleep(0.5)
    await connection.close()
    return out


def pg_size(url: str) -> int:
    """Bytes the PostgreSQL database of `url` takes on disk."""
    import psycopg

    with psycopg.connect(url) as db:
        row = db.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0])


def hwm_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="N = 10,000 (smoke test)")
    parser.add_argument("--repeat", type=int, default=3, help="GET /vm/status requests")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/vmd-bench-stores"),
                        help="where generated stores are kept and reused")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the daemon: its start-up, then the list requests")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                        help="the daemon's store: a SQLite file, or a fresh PostgreSQL "
                        "database (module docstring)")
    args = parser.parse_args()
    if args.quick:
        args.n, args.repeat = 10_000, 2
    common.print_machine("bench/fleet.py" + (" --quick" if args.quick else "")
                         + (f" --store {args.store}" if args.store != "sqlite" else ""))
    common.fresh_vhost()
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(common.workdir(args.keep))
        url = stack.enter_context(common.pg_database()) if args.store == "postgresql" else None
        cloud = stack.enter_context(common.cluster(base, store_url=url))
        if url is None:
            source = store_file(args.cache, args.n)
            size = f"{source.stat().st_size / 2**20:.0f} MiB"
            shutil.copyfile(source, cloud.store)
            shift_times(cloud.store, time.time() - restore.NOW)
        else:
            took = restore.generate(url, args.n)
            shift_times_pg(url, time.time() - restore.NOW)
            size = f"{pg_size(url) / 2**20:.0f} MiB"
            print(f"generated the fleet in PostgreSQL in {took:.1f} s")
        daemon = cloud.start_daemon()
        profiles = []
        if args.profile:
            profiler = common.Profiler(daemon.pid, base / "start.txt")
        ready = daemon.wait_ready(120)
        cpu_ready = common.proc_cpu_seconds(daemon.pid)
        # The server process of the daemon's store connection, started with the daemon.
        pg_cpu = sum(common.proc_cpu_seconds(pid) for pid in common.pg_backend_pids(url)
                     ) if url else None
        rss_ready = common.proc_rss_bytes(daemon.pid)
        if args.profile:
            profiles.append(("daemon start-up", profiler.stop()))
            profiler = common.Profiler(daemon.pid, base / "list.txt")
        lists = asyncio.run(list_all(args.repeat))
        if args.profile:
            profiles.append(("GET /vm/status", profiler.stop()))
            for title, path in profiles:
                common.summarize_profile(path, title=title)
                print()
        cloud.assert_alive()
        rss_after = common.proc_rss_bytes(daemon.pid)
        hwm = hwm_bytes(daemon.pid)
    print(f"fleet: {args.n:,} VMs on {restore.NODES} nodes, {args.store} store {size}")
    common.print_table(["measure", "value"], [
        ["cold start to READY=1 (s)", ready],
        ["daemon CPU until ready (s)", cpu_ready],
        *([["postgres CPU until ready (s)", pg_cpu]] if pg_cpu is not None else []),
        ["RSS when ready (MiB)", rss_ready / 2**20],
        ["RSS after the lists (MiB)", rss_after / 2**20],
        ["peak RSS, VmHWM (MiB)", hwm / 2**20],
    ])
    print()
    common.print_table(["GET /vm/status #", "to reply s", "client decode s", "reply MiB",
                        "VMs listed"],
                       [[k + 1, s, d, b / 2**20, v] for k, (s, d, b, v) in enumerate(lists)])
    best_list = min(s for s, _, _, _ in lists)
    print()
    common.print_table(["target", "measured", "verdict"], [
        [f"RSS < {TARGET_RSS_MB:g} MB (peak, MB)", hwm / 1e6,
         common.verdict(hwm / 1e6 < TARGET_RSS_MB)],
        [f"cold start < {TARGET_READY_S:g} s", ready, common.verdict(ready < TARGET_READY_S)],
        [f"GET /vm/status < {TARGET_LIST_S:g} s (worst of {len(lists)})",
         max(s for s, _, _, _ in lists),
         common.verdict(max(s for s, _, _, _ in lists) < TARGET_LIST_S)],
    ])
    print(f"(best GET /vm/status: {best_list:.2f} s)")
    print(f"\nload average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
