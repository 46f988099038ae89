"""Benchmark: the daemon's event loop under a hostile owner and during a 100k-VM list.

Issue 12: an owner's `order_by` of 7,000 items held the loop for seconds, and the list of a
big fleet was built in one step; every other principal's answer, heartbeats and the
watchdog waited. Two parts, on the same generated store of N VMs (`bench/fleet.py`'s,
default 100,000; 100 nodes, 1,000 owners):

(a) in-process, the world restored as the daemon restores it (GC tuned and frozen as in
    the daemon): the longest single step of each kind of request, i.e. how long it holds
    the loop (best of `--repeat`; the list: its snapshot step and its worst slice of
    sorting or rendering + encoding, as `vmd.daemon.listing` runs them);
(b) a real `vmd daemon` on that store (vhost `vmd-bench`, or `VMD_BENCH_VHOST`; no agents):
    a prober (admin, its own connection) asks `GET /vm/<hostname>/status` every 10 ms and
    times each answer; the daemon's own `vmd_event_loop_lag_seconds` is scraped from its
    /metrics before and after each phase. Phases: idle; a hostile burst (owner `alice`
    publishes `--burst` requests at once: max-size `order_by` of 7,000 items, the list of
    her VMs with all five fields, 60 KB unknown paths, GETs of her VMs); `--lists` admin
    lists of all N VMs in a row.

    .venv/bin/python bench/loop_lag.py            # N = 100,000
    .venv/bin/python bench/loop_lag.py --quick    # N = 10,000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import re
import shutil
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import aio_pika.abc

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import fleet
import restore

from vmd.bus import codec
from vmd.cli.runtime import tune_gc
from vmd.fsm import decide
from vmd.model import Principal, Request
from vmd.store import Store

REPLY_TO = "amq.rabbitmq.reply-to"
HUGE_ORDER_BY = ",".join(["hostname"] * 7000)  # 63 KB: just under the 64 KiB limit
FULL_ORDER_BY = "-status,alias,-status_change,uuid,-hostname"
TARGET_MS = 50.0


def first_owner() -> str:
    """The first owner uuid `restore.generate` draws (seed 1): alice's in this benchmark."""
    return restore._uuid(random.Random(1))


# ----------------------------------------------------------------------------- (a) in-process


def _best(fn: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def list_steps(world: Any, principal: Principal, order_by: str) -> tuple[float, float, float]:
    """(snapshot step, worst slice, total) seconds of one list built as the daemon does."""
    # Imported here: `--daemon-only` also runs against trees from before these modules.
    from vmd.daemon.listing import SLICE
    from vmd.fsm.listing import StatusList
    from vmd.fsm.params import parse_order_by

    order = parse_order_by(order_by)
    assert order is not None
    started = time.perf_counter()
    job = StatusList(world, principal, order)
    snapshot = time.perf_counter() - started
    worst, total = 0.0, snapshot
    for_slices = job.slices(SLICE)
    while True:
        started = time.perf_counter()
        part = next(for_slices, None)
        if part is None:
            break
        if part:
            codec.encode(part)
        took = time.perf_counter() - started
        worst, total = max(worst, took), total + took
    return snapshot, worst, total


def in_process(path: Path, repeat: int) -> list[list[Any]]:
    tune_gc()
    store = Store.open(path)
    world = restore.make_world(store.load_fleet(restore.NOW))
    store.close()
    gc.freeze()
    admin = Principal("admin", admin=True)
    alice = Principal("alice", owner_uuids=frozenset({first_owner()}))
    some = next(iter(world.vms))
    mine = next(iter(world.vms.owned_by(alice.owner_uuids)))

    def one(principal: Principal, method: str, path: str,
            data: dict[str, Any] | None = None) -> Any:
        return lambda: decide(world, principal, Request(method, path, data or {}),
                              restore.NOW)

    rows: list[list[Any]] = []
    owned = world.vms.owned_count(alice.owner_uuids)
    for label, fn in [
        ("GET /vm/<hostname>/status (admin)", one(admin, "GET", f"/vm/{some.hostname}/status")),
        ("GET /vm/<uuid>/status (owner)", one(alice, "GET", f"/vm/{mine.uuid}/status")),
        ("GET /vm/<60 KB>/status (owner, 404)", one(alice, "GET", f"/vm/{'x' * 60000}/status")),
        (f"GET /vm/status, owner ({owned} VMs), 5-field order_by",
         one(alice, "GET", "/vm/status", {"order_by": FULL_ORDER_BY})),
        ("GET /vm/status, order_by of 7,000 items (412)",
         one(alice, "GET", "/vm/status", {"order_by": HUGE_ORDER_BY})),
        ("PUT /vm/<uuid>/status/start (owner)", one(alice, "PUT", f"/vm/{mine.uuid}/status/start")),
        ("codec.decode of a 63 KB order_by request",
         lambda: codec.decode(json.dumps({"method": "GET", "path": "/vm/status",
                                          "data": {"order_by": HUGE_ORDER_BY}}).encode())),
    ]:
        rows.append([label, _best(fn, repeat) * 1000, "", ""])
    for order_by in ("hostname", FULL_ORDER_BY):
        steps = [list_steps(world, admin, order_by) for _ in range(repeat)]
        snapshot = min(s for s, _, _ in steps)
        worst = min(w for _, w, _ in steps)
        total = min(t for _, _, t in steps)
        rows.append([f"GET /vm/status, admin ({len(world.vms):,} VMs), {order_by}",
                     max(snapshot, worst) * 1000, snapshot * 1000, total * 1000])
    return rows


# ----------------------------------------------------------------------------- (b) daemon


def metrics_url(log: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if '"metrics served"' in line:
                return str(json.loads(line)["url"])
        time.sleep(0.1)
    raise RuntimeError("the daemon did not log its metrics address")


_BUCKET = re.compile(r'^vmd_event_loop_lag_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$', re.M)


def lag_buckets(url: str) -> dict[float, float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {float(le): float(n) for le, n in _BUCKET.findall(text)}


def worst_lag(before: dict[float, float], after: dict[float, float]) -> tuple[str, int, int]:
    """The worst lag sample between two scrapes (as a bucket range), the samples, and how
    many were over TARGET_MS."""
    if float("inf") not in after:
        return "n/a (no metric)", 0, 0  # a daemon from before vmd_event_loop_lag_seconds
    total = after[float("inf")] - before[float("inf")]
    edges = sorted(after)
    prev = 0.0
    for le in edges:
        if after[le] - before[le] >= total:
            text = f"{prev * 1000:g}-{le * 1000:g} ms" if le != float("inf") else "> 10 s"
            break
        prev = le
    over = total - (after[TARGET_MS / 1000] - before[TARGET_MS / 1000])
    return text, int(total), int(over)


class Prober:
    """Admin GETs of one VM every `every` s on a connection of their own, timed."""

    def __init__(self, hostname: str, every: float = 0.01) -> None:
        self.path = f"/vm/{hostname}/status"
        self.every = every
        self.samples: list[tuple[float, float]] = []  # (sent at, seconds to the answer)

    async def run(self) -> None:
        connection = await aio_pika.connect(common.amqp_url("admin"))
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange("vmd.commands")
            replies = await channel.get_queue(REPLY_TO, ensure=False)
            waiting: dict[str, asyncio.Future[float]] = {}

            async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                future = waiting.pop(message.correlation_id or "", None)
                if future is not None and not future.done():
                    future.set_result(time.perf_counter())

            await replies.consume(on_reply, no_ack=True)
            body = json.dumps({"method": "GET", "path": self.path}).encode()
            loop = asyncio.get_running_loop()
            while True:
                cid = uuid.uuid4().hex
                waiting[cid] = loop.create_future()
                sent = time.perf_counter()
                await exchange.publish(aio_pika.Message(
                    body, correlation_id=cid, reply_to=REPLY_TO, user_id="admin",
                    content_type="application/json"), "command")
                arrived = await asyncio.wait_for(waiting[cid], 120)
                self.samples.append((sent, arrived - sent))
                await asyncio.sleep(self.every)

    def between(self, start: float, end: float) -> common.Latencies:
        out = common.Latencies()
        for sent, took in self.samples:
            if start <= sent <= end:
                out.add(took)
        return out


async def _client(user: str) -> tuple[aio_pika.abc.AbstractConnection, Any, dict[str, Any]]:
    connection = await aio_pika.connect(common.amqp_url(user))
    channel = await connection.channel()
    exchange = await channel.get_exchange("vmd.commands")
    replies = await channel.get_queue(REPLY_TO, ensure=False)
    box: dict[str, Any] = {"codes": {}, "left": 0, "done": asyncio.Event(), "sizes": []}

    async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        code = (message.headers or {}).get("code")
        box["codes"][code] = box["codes"].get(code, 0) + 1
        box["sizes"].append(len(message.body))
        box["left"] -= 1
        if box["left"] <= 0:
            box["done"].set()

    await replies.consume(on_reply, no_ack=True)
    return connection, exchange, box


async def hostile_burst(n: int, mine: list[str]) -> dict[Any, int]:
    """`n` requests from alice, published at once; returns the answers' codes."""
    connection, exchange, box = await _client("alice")
    kinds = [
        {"method": "GET", "path": "/vm/status", "data": {"order_by": HUGE_ORDER_BY}},
        {"method": "GET", "path": "/vm/status", "data": {"order_by": FULL_ORDER_BY}},
        {"method": "GET", "path": f"/vm/{'x' * 60000}/status"},
        *({"method": "GET", "path": f"/vm/{h}/status"} for h in mine[:5]),
    ]
    bodies = [json.dumps(kinds[i % len(kinds)]).encode() for i in range(n)]
    box["left"] = n
    async with connection:
        await asyncio.gather(*(exchange.publish(aio_pika.Message(
            b, correlation_id=uuid.uuid4().hex, reply_to=REPLY_TO, user_id="alice",
            content_type="application/json"), "command") for b in bodies))
        await asyncio.wait_for(box["done"].wait(), 300)
    return dict(box["codes"])


async def full_lists(repeat: int) -> list[tuple[float, int]]:
    """(seconds to the answer, bytes) of `repeat` admin lists in a row."""
    connection, exchange, box = await _client("admin")
    out = []
    body = json.dumps({"method": "GET", "path": "/vm/status"}).encode()
    async with connection:
        for _ in range(repeat):
            box["left"], box["done"] = 1, asyncio.Event()
            sent = time.perf_counter()
            await exchange.publish(aio_pika.Message(
                body, correlation_id=uuid.uuid4().hex, reply_to=REPLY_TO, user_id="admin",
                content_type="application/json"), "command")
            await asyncio.wait_for(box["done"].wait(), 300)
            out.append((time.perf_counter() - sent, box["sizes"][-1]))
    return out


async def against_daemon(url: str, probe_host: str, mine: list[str], burst: int,
                         lists: int) -> list[list[Any]]:
    prober = Prober(probe_host)
    probing = asyncio.create_task(prober.run())
    rows: list[list[Any]] = []

    async def phase(name: str, work: Any) -> Any:
        before = await asyncio.to_thread(lag_buckets, url)
        start = time.perf_counter()
        result = await work
        end = time.perf_counter()
        await asyncio.sleep(0.6)  # the last lag sample of the phase reaches /metrics
        after = await asyncio.to_thread(lag_buckets, url)
        lat = prober.between(start, end).summary()
        lag, samples, over = worst_lag(before, after)
        rows.append([name, end - start, lat["n"], lat["p50_ms"], lat["p99_ms"],
                     lat["max_ms"], lag, f"{over} of {samples}"])
        return result

    try:
        await asyncio.sleep(1.0)
        await phase("idle (3 s)", asyncio.sleep(3.0))
        codes = await phase(f"hostile burst: {burst} owner requests", hostile_burst(burst, mine))
        print(f"burst answers by code: {dict(sorted(codes.items(), key=str))}")
        listed = await phase(f"{lists} admin lists of all VMs", full_lists(lists))
        print("lists: " + ", ".join(f"{s:.2f} s ({b / 2**20:.1f} MiB)" for s, b in listed))
    finally:
        probing.cancel()
        try:
            await probing
        except asyncio.CancelledError:
            pass
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="N = 10,000 (smoke test)")
    parser.add_argument("--burst", type=int, default=400, help="hostile requests at once")
    parser.add_argument("--lists", type=int, default=3, help="admin lists in a row")
    parser.add_argument("--repeat", type=int, default=5, help="in-process repeats (best of)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/vmd-bench-stores"))
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--daemon-only", action="store_true",
                        help="part (b) only (e.g. against an older tree on PYTHONPATH)")
    args = parser.parse_args()
    if args.quick:
        args.n, args.burst, args.lists, args.repeat = 10_000, 100, 2, 3
    common.print_machine("bench/loop_lag.py" + (" --quick" if args.quick else ""))
    source = fleet.store_file(args.cache, args.n)

    if not args.daemon_only:
        print(f"\n(a) in-process, {args.n:,} VMs: the longest step each request holds the loop")
        common.print_table(["request", "longest step ms", "snapshot ms", "whole list ms"],
                           in_process(source, args.repeat))

    owner = first_owner()
    common.fresh_vhost()
    auth = f'[auth.owners]\nalice = ["{owner}"]\n'
    with common.workdir(args.keep) as base, common.cluster(base, auth_extra=auth) as cloud:
        shutil.copyfile(source, cloud.store)
        fleet.shift_times(cloud.store, time.time() - restore.NOW)
        with Store.open(cloud.store) as store:
            vms = store.load_fleet(time.time()).vms.values()
            mine = [vm.hostname for vm in vms if vm.owner_uuid == owner]
            probe_host = next(iter(vms)).hostname
        daemon = cloud.start_daemon()
        ready = daemon.wait_ready(120)
        url = metrics_url(daemon.log)
        print(f"\n(b) vmd daemon on {args.n:,} VMs (ready in {ready:.2f} s); alice owns "
              f"{len(mine)} VMs; the prober asks for {probe_host} every 10 ms")
        rows = asyncio.run(against_daemon(url, probe_host, mine, args.burst, args.lists))
        cloud.assert_alive()
    common.print_table(["phase", "s", "probes", "probe p50 ms", "probe p99 ms", "probe max ms",
                        "worst loop lag", f"lag samples > {TARGET_MS:g} ms"], rows)
    print(f"\nload average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
