"""Benchmark: command throughput and latency of vmd, side by side with the raw broker.

One run measures, on the local RabbitMQ (vhost `vmd-bench`, re-created first):

(a) raw: a plain aio-pika request/reply echo with `--window` requests in flight: the client
    publishes a persistent, mandatory, confirmed request to a durable direct exchange and
    queue (what `vmd.client` sends), a responder in another process consumes it with manual
    ack (prefetch = window) and publishes the reply over Direct Reply-to (confirmed), then
    acks. This is the broker's own limit for one request/reply hop on this machine.
(b) vmd: a real `vmd daemon` and `--nodes` real `vmd agent` processes with the in-process
    simulated hypervisor (`[agent] backend = "memory"`, instant start/stop), `--vms` VMs
    in all. A client (`vmd.bus.BusClient`, stream mode) keeps `--window` start/stop commands
    in flight, each on a VM with no other command in flight, and times the first answer
    (201) and the final answer (the task's end). Then the same client sends commands at
    half the measured peak rate (open loop, fixed spacing) and times them again.

It prints commands/s, p50/p99 of the 201 and of the final answer, the raw round trips/s,
the ratio vmd/raw, the CPU seconds each process used, and the targets. `--compare-quorum`
runs (a) once more on a quorum queue (single active consumer, `x-delivery-limit`) and
prints both side by side: what moving `vmd.commands` to one would cost the broker
(docs/reliability.md, "The delivery limit"). `--store postgresql` puts the daemon's store
on a fresh PostgreSQL database (127.0.0.1:5432, created and dropped by the run) instead of
its SQLite file; `--compare-store` runs (b) on SQLite and on PostgreSQL in turn
(`--rounds` times each, alternating, so both see the same machine) and prints both side by
side (docs/performance.md, "The command path on PostgreSQL against SQLite"). On
PostgreSQL the CPU of the server process serving the daemon's store connection counts as
`postgres` (the store's work is there, not in the daemon).

    .venv/bin/python bench/commands.py            # full run (about a minute)
    .venv/bin/python bench/commands.py --quick    # smoke test (seconds)
    .venv/bin/python bench/commands.py --raw-only --compare-quorum   # classic vs quorum
    .venv/bin/python bench/commands.py --compare-store               # SQLite vs PostgreSQL
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import aio_pika.abc

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

from vmd.bus import BusClient, BusSettings, RpcTimeout
from vmd.model import Request

T = TypeVar("T")
ECHO_EXCHANGE = "vmd.bench.echo"
ECHO_QUEUE = "vmd.bench.echo"
ECHO_KEY = "command"
REPLY_TO = "amq.rabbitmq.reply-to"
TARGET_RATIO = 0.25
TARGET_RATE = 500.0
TARGET_P99_201_MS = 20.0


def _body(hostname: str, action: str) -> bytes:
    return json.dumps({"method": "PUT", "path": f"/vm/{hostname}/status/{action}",
                       "data": {}}).encode()


# ----------------------------------------------------------------------------- (a) raw echo


async def echo_server(url: str, window: int, queue_type: str = "classic") -> None:
    """The responder of the raw echo (its own process, like the daemon). `queue_type`
    quorum: the queue is a quorum queue with single active consumer and a delivery limit,
    what moving `vmd.commands` to one would be (docs/reliability.md, "The delivery limit")."""
    connection = await aio_pika.connect(url)
    channel = await connection.channel()  # publisher confirms on (aio-pika's default)
    await channel.set_qos(prefetch_count=window)
    exchange = await channel.declare_exchange(ECHO_EXCHANGE, aio_pika.ExchangeType.DIRECT,
                                              durable=True)
    arguments: dict[str, Any] | None = None if queue_type == "classic" else {
        "x-queue-type": queue_type, "x-single-active-consumer": True, "x-delivery-limit": 2}
    queue = await channel.declare_queue(ECHO_QUEUE, durable=True, arguments=arguments)
    await queue.bind(exchange, ECHO_KEY)
    default = channel.default_exchange

    async def on_request(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        assert message.reply_to is not None
        reply = aio_pika.Message(message.body, correlation_id=message.correlation_id,
                                 headers={"code": 200}, content_type="application/json")
        await default.publish(reply, message.reply_to, mandatory=False)
        await message.ack()

    await queue.consume(on_request)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await connection.close()


@dataclass
class RawResult:
    window: int
    seconds: float
    round_trips: int
    latency: common.Latencies = field(default_factory=common.Latencies)

    @property
    def rate(self) -> float:
        return self.round_trips / self.seconds


async def raw_client(url: str, window: int, warmup: float, seconds: float,
                     meter: common.CpuMeter) -> RawResult:
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    exchange = await channel.get_exchange(ECHO_EXCHANGE)
    replies = await channel.get_queue(REPLY_TO, ensure=False)
    waiting: dict[str, asyncio.Future[None]] = {}

    async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        future = waiting.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(None)

    await replies.consume(on_reply, no_ack=True)
    loop = asyncio.get_running_loop()
    result = RawResult(window, seconds, 0)
    start = time.perf_counter() + warmup
    end = start + seconds
    loop.call_later(warmup, meter.start)
    loop.call_later(warmup + seconds, meter.stop)
    body = _body("web01.example.com", "start")

    async def worker() -> None:
        while (now := time.perf_counter()) < end:
            correlation_id = uuid.uuid4().hex
            future: asyncio.Future[None] = loop.create_future()
            waiting[correlation_id] = future
            message = aio_pika.Message(
                body, correlation_id=correlation_id, message_id=uuid.uuid4().hex,
                reply_to=REPLY_TO, user_id="vmd", content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await exchange.publish(message, ECHO_KEY, mandatory=True)
            await future
            done = time.perf_counter()
            if start <= done < end:
                result.round_trips += 1
                result.latency.add(done - now)

    await asyncio.gather(*(worker() for _ in range(window)))
    await connection.close()
    return result


def run_loop(coro: Coroutine[Any, Any, T], uvloop: bool) -> T:
    if uvloop:
        import uvloop as uv

        return uv.run(coro)
    return asyncio.run(coro)


def run_raw(window: int, warmup: float, seconds: float, uvloop: bool = False,
            queue_type: str = "classic") -> tuple[RawResult, dict[str, float]]:
    # The broker's own cost, both ends as the daemon's user: the only role that may declare
    # (vmd.*) and publish on the default exchange (docs/security.md).
    url = common.amqp_url("vmd")
    server = subprocess.Popen([sys.executable, __file__, "--echo-server", "--window",
                               str(window), *(["--uvloop"] if uvloop else []),
                               "--queue-type", queue_type],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError("the echo responder did not start")
        pids = {"responder": server.pid, "client": os.getpid()}
        if (broker := common.broker_pid()) is not None:
            pids["broker"] = broker
        meter = common.CpuMeter(pids)
        result = run_loop(raw_client(url, window, warmup, seconds, meter), uvloop)
        cpu = meter.used
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
    return result, cpu


# ----------------------------------------------------------------------------- (b) vmd


@dataclass
class VmdResult:
    label: str
    seconds: float
    commands: int = 0
    first: common.Latencies = field(default_factory=common.Latencies)
    final: common.Latencies = field(default_factory=common.Latencies)
    codes: Counter[str] = field(default_factory=Counter)
    offered: float = 0.0
    skipped: int = 0
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.commands / self.seconds


def fleet(nodes: int, vms: int) -> list[tuple[str, bool]]:
    """(hostname, running) of every VM of the memory nodes (docs/agent.md: VM i of node
    `<label>` is `<label>-vm<iiii>.example.com`, running when i is odd)."""
    per_node = vms // nodes
    return [(f"{node_name(k).split('.')[0]}-vm{i:04d}.example.com", i % 2 == 1)
            for k in range(nodes) for i in range(1, per_node + 1)]


def node_name(k: int) -> str:
    return f"cn{k:02d}.bench"


class Driver:
    """Sends start/stop commands in stream mode; one command per VM at a time."""

    def __init__(self, client: BusClient, vms: list[tuple[str, bool]],
                 timeout: float = 30.0) -> None:
        self.client = client
        self.timeout = timeout
        self.timeouts: list[str] = []
        self.running = dict(vms)
        self.idle: deque[str] = deque(self.running)

    async def command(self, hostname: str, result: VmdResult, start: float, end: float) -> None:
        action = "stop" if self.running[hostname] else "start"
        sent = time.perf_counter()
        first_at = final_at = 0.0
        codes = []
        request = Request("PUT", f"/vm/{hostname}/status/{action}", {})
        try:
            async for reply in self.client.stream(request, timeout=self.timeout,
                                                  final_timeout=self.timeout):
                codes.append(str(reply.code))
                if first_at == 0.0:
                    first_at = time.perf_counter()
                else:
                    final_at = time.perf_counter()
                    if reply.code == 200 and reply.body.get("status") == "SUCCESS":
                        self.running[hostname] = action == "start"
        except RpcTimeout:
            codes.append("timeout")
            self.timeouts.append(f"{action} {hostname}")
        result.codes["/".join(codes)] += 1
        if first_at and start <= (final_at or first_at) < end:
            result.commands += 1
            result.first.add(first_at - sent)
            if final_at:
                result.final.add(final_at - sent)

    async def closed_loop(self, window: int, warmup: float, seconds: float,
                          meter: common.CpuMeter) -> VmdResult:
        result = VmdResult(f"peak, {window} in flight", seconds)
        start = time.perf_counter() + warmup
        end = start + seconds
        measure(meter, result, warmup, seconds)

        async def worker() -> None:
            while time.perf_counter() < end:
                hostname = self.idle.popleft()
                try:
                    await self.command(hostname, result, start, end)
                finally:
                    self.idle.append(hostname)

        await asyncio.gather(*(worker() for _ in range(min(window, len(self.idle)))))
        await common.sleep_until(end + 0.05)  # the CPU meter stops at `end`
        return result

    async def open_loop(self, rate: float, warmup: float, seconds: float,
                        meter: common.CpuMeter) -> VmdResult:
        result = VmdResult(f"paced at {rate:,.0f}/s", seconds, offered=rate)
        start = time.perf_counter() + warmup
        end = start + seconds
        measure(meter, result, warmup, seconds)
        tasks: set[asyncio.Task[None]] = set()

        async def one(hostname: str) -> None:
            try:
                await self.command(hostname, result, start, end)
            finally:
                self.idle.append(hostname)

        t = time.perf_counter()
        while t < end:
            await common.sleep_until(t)
            if self.idle:
                task = asyncio.create_task(one(self.idle.popleft()))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            elif t >= start:
                result.skipped += 1
            t += 1.0 / rate
        if tasks:
            await asyncio.gather(*tasks)
        await common.sleep_until(end + 0.05)  # the CPU meter stops at `end`
        return result


def measure(meter: common.CpuMeter, result: VmdResult, warmup: float, seconds: float) -> None:
    """Count CPU seconds of the measured window only (not the warm-up, not the tail)."""
    loop = asyncio.get_running_loop()
    loop.call_later(warmup, meter.start)
    loop.call_later(warmup + seconds, lambda: result.cpu.update(meter.stop()))


async def wait_fleet(client: BusClient, expected: int, timeout: float) -> float:
    """Seconds until the daemon lists `expected` VMs (the agents' first full syncs)."""
    started = time.perf_counter()
    deadline = started + timeout
    seen = -1
    while time.perf_counter() < deadline:
        reply = await client.call(Request("GET", "/vm/status", {}), timeout=30)
        result = reply.body.get("result")
        seen = len(result) if isinstance(result, list) else -1
        if seen >= expected:
            return time.perf_counter() - started
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the daemon lists {seen} VMs, expected {expected}, after {timeout:g}s")


def run_vmd(args: argparse.Namespace, store: str = "sqlite") -> tuple[float, list[VmdResult]]:
    vms = fleet(args.nodes, args.vms)
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(common.workdir(args.keep))
        url = stack.enter_context(common.pg_database()) if store == "postgresql" else None
        cloud = stack.enter_context(common.cluster(base, uvloop=args.uvloop, store_url=url))
        cloud.daemon_extra = f"prefetch = {args.window}"
        daemon = cloud.start_daemon()
        ready_s = daemon.wait_ready(60)
        agents = [cloud.start_agent(node_name(k), args.vms // args.nodes)
                  for k in range(args.nodes)]
        for agent in agents:
            agent.wait_ready(60)
        pids = {"daemon": daemon.pid, **{a.name: a.pid for a in agents},
                "client": os.getpid()}
        if (broker := common.broker_pid()) is not None:
            pids["broker"] = broker
        for k, pid in enumerate(common.pg_backend_pids(url) if url else []):
            pids["postgres" if k == 0 else f"postgres{k + 1}"] = pid

        async def drive() -> list[VmdResult]:
            settings = BusSettings(common.amqp_url("admin"), connection_name="bench-client")
            async with BusClient(settings) as client:
                await wait_fleet(client, len(vms), 60)
                driver = Driver(client, vms)
                meter = common.CpuMeter(pids)
                profilers = []
                if args.profile:
                    profilers = [(name, common.Profiler(pid, base / f"{name}.prof.txt"))
                                 for name, pid in (("daemon", daemon.pid),
                                                   ("agent", agents[0].pid))]
                peak = await driver.closed_loop(args.window, args.warmup, args.seconds, meter)
                for name, profiler in profilers:
                    common.summarize_profile(profiler.stop(), title=f"{name}, peak run")
                    print()
                cloud.assert_alive()
                half = await driver.open_loop(max(1.0, peak.rate / 2), args.warmup,
                                              args.seconds, meter)
                cloud.assert_alive()
                extra = []
                for rate in args.rates:
                    extra.append(await driver.open_loop(rate, args.warmup, args.seconds, meter))
                    cloud.assert_alive()
                if driver.timeouts:
                    print(f"no answer within {driver.timeout:g}s for {len(driver.timeouts)} "
                          f"commands, e.g. {driver.timeouts[:3]}")
                return [peak, half, *extra]

        results = run_loop(drive(), args.uvloop)
        return ready_s, results


# ----------------------------------------------------------------------------- report


def _cpu_line(cpu: dict[str, float], seconds: float, per: int, what: str) -> str:
    agents = sum(v for k, v in cpu.items() if k.startswith("agent-"))
    parts = {k: v for k, v in cpu.items() if not k.startswith("agent-")}
    if agents:
        parts["agents"] = agents
    total = sum(parts.values())
    text = ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
    per_op = f"{total / per * 1e6:,.0f} µs CPU per {what}" if per else ""
    return (f"CPU seconds over {seconds:g}s: {text} (total {total:.2f} of "
            f"{seconds * (os.cpu_count() or 1):g} available; {per_op})")


def report(args: argparse.Namespace, raw: RawResult, raw_cpu: dict[str, float],
           vmd: list[VmdResult] | None) -> None:
    lat = raw.latency.summary()
    print("(a) raw aio-pika request/reply echo "
          f"({raw.window} in flight, persistent + confirmed request, confirmed reply)")
    common.print_table(["", "round trips/s", "p50 ms", "p99 ms", "max ms"],
                       [["raw", raw.rate, lat["p50_ms"], lat["p99_ms"], lat["max_ms"]]])
    print(_cpu_line(raw_cpu, raw.seconds, raw.round_trips, "round trip"))
    print()
    if vmd is None:
        print("(b) skipped (--raw-only)")
        return
    print(f"(b) vmd: start/stop in stream mode over {args.vms:,} VMs on {args.nodes} nodes "
          "(daemon + memory-backend agents)")
    rows = []
    for r in vmd:
        f, g = r.first.summary(), r.final.summary()
        rows.append([r.label, r.rate, f["p50_ms"], f["p99_ms"], g["p50_ms"], g["p99_ms"],
                     r.rate / raw.rate])
    common.print_table(["run", "commands/s", "201 p50 ms", "201 p99 ms", "final p50 ms",
                        "final p99 ms", "vmd/raw"], rows)
    for r in vmd:
        print(f"{r.label}: answers {dict(r.codes)}"
              + (f", {r.skipped} arrivals found no idle VM" if r.skipped else ""))
        print("  " + _cpu_line(r.cpu, r.seconds, r.commands, "command"))
    peak, half = vmd[:2]
    if len(vmd) > 2:
        print()
        print("cost of a command against the offered rate (all processes, broker included)")
        common.print_table(
            ["run", "commands/s", "201 p50 ms", "201 p99 ms", "final p99 ms",
             "CPU ms per command", "CPU busy of 2 cores"],
            [[r.label, r.rate, r.first.summary()["p50_ms"], r.first.summary()["p99_ms"],
              r.final.summary()["p99_ms"], sum(r.cpu.values()) / max(1, r.commands) * 1e3,
              f"{sum(r.cpu.values()) / (r.seconds * (os.cpu_count() or 1)):.0%}"]
             for r in sorted(vmd, key=lambda r: r.rate)])
    raw_cost = sum(raw_cpu.values()) / max(1, raw.round_trips)
    vmd_cost = sum(peak.cpu.values()) / max(1, peak.commands)
    print()
    print(f"CPU cost (all processes, broker included): raw {raw_cost * 1e3:.2f} ms per round "
          f"trip, vmd {vmd_cost * 1e3:.2f} ms per command at peak; vmd/raw by CPU cost "
          f"{raw_cost / vmd_cost:.2f} (the rate ratio a CPU-bound machine would give; less "
          "sensitive to what else runs than the wall-clock ratio)")
    print()
    print("targets")
    common.print_table(["target", "measured", "verdict"], [
        [f"vmd/raw by CPU cost >= {TARGET_RATIO}", raw_cost / vmd_cost,
         common.verdict(raw_cost / vmd_cost >= TARGET_RATIO)],
        [f"vmd/raw >= {TARGET_RATIO}", peak.rate / raw.rate,
         common.verdict(peak.rate / raw.rate >= TARGET_RATIO)],
        [f"commands/s >= {TARGET_RATE:g}", peak.rate, common.verdict(peak.rate >= TARGET_RATE)],
        [f"201 p99 at half peak < {TARGET_P99_201_MS:g} ms", half.first.summary()["p99_ms"],
         common.verdict(half.first.summary()["p99_ms"] < TARGET_P99_201_MS)],
    ])


def _compare(classic: RawResult, classic_cpu: dict[str, float], quorum: RawResult,
             quorum_cpu: dict[str, float]) -> None:
    rows: list[list[Any]] = []
    for name, r, cpu in (("classic", classic, classic_cpu), ("quorum", quorum, quorum_cpu)):
        lat = r.latency.summary()
        rows.append([name, r.rate, lat["p50_ms"], lat["p99_ms"],
                     sum(cpu.values()) / max(1, r.round_trips) * 1e3,
                     cpu.get("broker", 0.0) / max(1, r.round_trips) * 1e3])
    print("\n(a') the raw echo on a classic queue and on a quorum queue (SAC, delivery limit)")
    common.print_table(["queue", "round trips/s", "p50 ms", "p99 ms", "CPU ms/rt",
                  "broker CPU ms/rt"], rows)
    print(f"quorum/classic: rate {quorum.rate / classic.rate:.2f}, p50 "
          f"{rows[1][2] / rows[0][2]:.2f}x, CPU per round trip {rows[1][4] / rows[0][4]:.2f}x")


def _compare_stores(raw: RawResult, runs: list[tuple[str, list[VmdResult]]]) -> None:
    """(b) on each store, round by round: the same figures side by side."""
    rows: list[list[Any]] = []
    for label, results in runs:
        for r, what in zip(results[:2], ("peak", "half peak"), strict=True):
            f, g = r.first.summary(), r.final.summary()
            commands = max(1, r.commands)
            rows.append([label, what, r.rate, r.rate / raw.rate,
                         sum(r.cpu.values()) / commands * 1e3,
                         r.cpu.get("daemon", 0.0) / commands * 1e3,
                         sum(v for k, v in r.cpu.items() if k.startswith("postgres"))
                         / commands * 1e3,
                         f["p50_ms"], f["p99_ms"], g["p50_ms"], g["p99_ms"]])
    print("\n(b') the command path with the daemon's store on SQLite and on PostgreSQL "
          "(alternating)")
    common.print_table(["store", "run", "commands/s", "vmd/raw", "CPU ms/cmd",
                        "daemon ms/cmd", "postgres ms/cmd", "201 p50 ms", "201 p99 ms",
                        "final p50 ms", "final p99 ms"], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small and short (smoke test)")
    parser.add_argument("--window", type=int, default=256, help="requests in flight")
    parser.add_argument("--vms", type=int, default=2000)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured time per run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--raw-only", action="store_true", help="only part (a)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--uvloop", action="store_true",
                        help="run every process (echo, client, daemon, agents) on uvloop")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the daemon and the first agent during the peak run")
    parser.add_argument("--rates", type=lambda text: [float(r) for r in text.split(",")],
                        default=[], help="also run paced at these rates (e.g. 50,100,200) "
                        "and print latency and CPU per command against the rate")
    parser.add_argument("--compare-quorum", action="store_true",
                        help="run (a) again on a quorum queue (SAC, x-delivery-limit) and "
                        "print what moving vmd.commands to one would cost")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                        help="the daemon's store: its SQLite file, or a fresh PostgreSQL "
                        "database on 127.0.0.1:5432 (created and dropped by the run)")
    parser.add_argument("--compare-store", action="store_true",
                        help="run (b) on SQLite and on PostgreSQL, alternating, --rounds "
                        "times each, and print both side by side")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of each store with --compare-store")
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--queue-type", default="classic", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        run_loop(echo_server(common.amqp_url("vmd"), args.window, args.queue_type),
                 args.uvloop)
        return 0
    if args.quick:
        args.vms, args.nodes, args.seconds, args.warmup = 200, 2, 2.0, 0.5
        args.window = min(args.window, 64)
    common.fresh_vhost()
    common.print_machine("bench/commands.py" + (" --quick" if args.quick else "")
                         + (" --uvloop" if args.uvloop else "")
                         + (" --compare-store" if args.compare_store
                            else f" --store {args.store}" if args.store != "sqlite" else ""))
    raw, raw_cpu = run_raw(args.window, args.warmup, args.seconds, args.uvloop)
    vmd = None
    stores = (["sqlite", "postgresql"] * args.rounds if args.compare_store
              else [args.store])
    runs: list[tuple[str, list[VmdResult]]] = []
    for k, store in enumerate([] if args.raw_only else stores):
        common.fresh_vhost()
        ready_s, results = run_vmd(args, store)
        label = f"{store} #{k // 2 + 1}" if args.compare_store else store
        runs.append((label, results))
        print(f"(daemon ready {ready_s:.2f}s after spawn, empty {label} store)", flush=True)
        vmd = vmd or results
    report(args, raw, raw_cpu, vmd)
    if args.compare_store:
        _compare_stores(raw, runs)
    if args.compare_quorum:
        common.fresh_vhost()
        quorum, quorum_cpu = run_raw(args.window, args.warmup, args.seconds, args.uvloop,
                                     queue_type="quorum")
        _compare(raw, raw_cpu, quorum, quorum_cpu)
    print(f"\nload average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
