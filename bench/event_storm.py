"""Benchmark: an event storm. A node reports N changes at once (a power loss); how long until
every change is applied and its `status_change` event is published?

A real `vmd daemon` (fresh store, vhost `vmd-bench`) and a fake agent that speaks the agent
protocol over the bus (`vmd.bus.agent.report_message`), so the figure is the daemon's cost
and not the agent's: the agent side is one publish of pre-built reports.

0. The broker's own limit, side by side: the bench publishes N events of the same size to
   `vmd.events` from another process with plain aio-pika (confirmed, 500 in flight, as the
   daemon's chunks), to the same subscriber.
1. The fake agent sends a heartbeat and a full sync listing N running VMs on its node; the
   daemon adds them (first seen), which publishes one `status_change` per VM.
2. Power loss: the fake agent publishes N observations `stopped` (change time = now), in
   reports of 1000 (the real agent's `Reporter.max_batch`), all at once.
3. Power back: the same with `running`.

A subscriber queue bound to `vmd.events` with `vm.#` counts the events. For each phase it
prints the seconds from the first report's publish to the N-th event's arrival, and
observations/s. An event is published only after its change is committed to the store
(the commit pipeline), so the N-th event is "every change applied and published".

    .venv/bin/python bench/event_storm.py            # N = 10,000
    .venv/bin/python bench/event_storm.py --quick    # N = 1,000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import aio_pika.abc
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

from vmd.bus import Bus, BusSettings, FullSync, Heartbeat, ObservationReport, agent_topology
from vmd.bus.agent import report_message
from vmd.model import NodeName, Observation, VmUuid

NODE = NodeName("storm.bench")
OWNER = "8a1a4e6c-0000-4000-8000-00000000beef"
BATCH = 1000  # vmd.node_agent.reporter.Reporter's max_batch
TARGET = 5000.0
RAW_WINDOW = 500  # vmd.daemon.commit.CHUNK: the daemon publishes a turn in chunks of 500
RAW_PHASE = "raw: N events, plain aio-pika"


@dataclass
class Phase:
    name: str
    n: int
    seconds: float = 0.0
    first_event: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.n / self.seconds if self.seconds else 0.0


class Subscriber:
    """Counts `status_change` events; wakes a waiter when a phase has seen enough."""

    def __init__(self) -> None:
        self.count = 0
        self.statuses: Counter[str] = Counter()
        self.first_at = 0.0
        self.last_at = 0.0
        self.want = 0
        self.done = asyncio.Event()

    def expect(self, n: int) -> None:
        self.count, self.want = 0, n
        self.statuses = Counter()
        self.first_at = self.last_at = 0.0
        self.done.clear()

    async def on_event(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        now = time.perf_counter()
        if not self.count:
            self.first_at = now
        self.count += 1
        self.last_at = now
        self.statuses[orjson.loads(message.body)["status"]] += 1
        if self.count >= self.want:
            self.done.set()


def vm_object(i: int, uuid: str) -> dict[str, object]:
    return {"uuid": uuid, "hostname": f"storm{i:05d}.example.com", "alias": f"storm{i:05d}",
            "brand": "kvm", "owner_uuid": OWNER, "state": "running"}


def reports(uuids: list[VmUuid], state: str, at: float) -> list[ObservationReport]:
    observations = [Observation(u, NODE, state, at) for u in uuids]
    return [ObservationReport(NODE, at, tuple(observations[k:k + BATCH]))
            for k in range(0, len(observations), BATCH)]


async def raw_publisher(n: int) -> None:
    """The raw side (its own process, like the daemon): connect, build N event messages,
    print "ready", publish them all when a line arrives on stdin, print "done"."""
    connection = await aio_pika.connect(common.amqp_url("vmd"))
    channel = await connection.channel()
    exchange = await channel.get_exchange("vmd.events")
    template = {"uuid": "", "hostname": "storm00000.example.com", "alias": "storm00000",
                "node": NODE, "owner_uuid": OWNER, "status": "raw", "previous": "running",
                "status_change": "2026-11-27T07:00:00.000Z", "seq": 2, "task_id": None,
                "cause": "node"}
    messages = []
    for _ in range(n):
        u = str(uuid.uuid4())
        body = orjson.dumps(template | {"uuid": u})
        messages.append((aio_pika.Message(body, content_type="application/json",
                                          delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                         f"vm.{OWNER}.{u}.status_change"))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for k in range(0, len(messages), RAW_WINDOW):
        await asyncio.gather(*(exchange.publish(m, key) for m, key in messages[k:k + RAW_WINDOW]))
    print("done", flush=True)
    await connection.close()


async def run(n: int, timeout: float, pids: dict[str, int],
              raw: subprocess.Popen[str], profile: Path | None = None) -> list[Phase]:
    connection = await aio_pika.connect(common.amqp_url("admin"))
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=2000)
    events = await channel.get_exchange("vmd.events")
    queue = await channel.declare_queue(f"admin.bench.storm.{os.getpid()}", exclusive=True)
    await queue.bind(events, "vm.#")
    sub = Subscriber()
    await queue.consume(sub.on_event, no_ack=True)

    agent = Bus(BusSettings(common.amqp_url(common.BENCH_AGENT),
                            connection_name="bench-fake-agent"),
                topology=agent_topology(NODE))
    await agent.start()
    uuids = [VmUuid(str(uuid.uuid4())) for _ in range(n)]
    phases = []
    meter = common.CpuMeter(pids)
    try:
        # The broker's own limit first: the same number of events, published by plain
        # aio-pika in another process, with confirms, RAW_WINDOW in flight, to the same
        # exchange and subscriber.
        assert raw.stdin is not None and raw.stdout is not None
        if raw.stdout.readline().strip() != "ready":
            raise RuntimeError("the raw publisher did not start")
        meter.pids["publisher"] = raw.pid
        sub.expect(n)
        meter.start()
        started = time.perf_counter()
        raw.stdin.write("go\n")
        raw.stdin.flush()
        async with asyncio.timeout(timeout):
            await sub.done.wait()
        phases.append(Phase(RAW_PHASE, n, sub.last_at - started, sub.first_at - started,
                            sub.statuses, meter.stop()))
        del meter.pids["publisher"]
        raw.stdin.close()
        raw.wait(timeout=30)
        await asyncio.sleep(0.5)
        now = time.time()
        await agent.publish(report_message(Heartbeat(NODE, now, 5.0, now),
                                           user_id=common.BENCH_AGENT))
        sync = FullSync(NODE, now, tuple(
            Observation(u, NODE, "running", now - 60, vm_object(i, u))
            for i, u in enumerate(uuids)), ())
        plan = [("full sync: N first-seen VMs", None), ("power loss: N x stopped", "stopped"),
                ("power back: N x running", "running")]
        for name, state in plan:
            # Observation reports carry the node's change time: now, for each phase.
            batch = ([report_message(sync, user_id=common.BENCH_AGENT)] if state is None
                     else [report_message(r, user_id=common.BENCH_AGENT)
                           for r in reports(uuids, state, time.time())])
            sub.expect(n)
            profiler = None
            if profile is not None and state == "stopped":
                profiler = common.Profiler(pids["daemon"], profile)
                await asyncio.sleep(0.5)  # py-spy attaches
            meter.start()
            started = time.perf_counter()
            await agent.publish_many(batch, timeout=timeout)
            async with asyncio.timeout(timeout):
                await sub.done.wait()
            if profiler is not None:
                profiler.stop()
            phase = Phase(name, n, sub.last_at - started, sub.first_at - started,
                          sub.statuses, meter.stop())
            phases.append(phase)
            await asyncio.sleep(0.5)
    finally:
        await agent.close()
        await connection.close()
    return phases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="changes in the storm")
    parser.add_argument("--quick", action="store_true", help="N = 1,000 (smoke test)")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the daemon during the power loss phase")
    parser.add_argument("--raw-publisher", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_publisher:
        asyncio.run(raw_publisher(args.raw_publisher))
        return 0
    if args.quick:
        args.n = 1000
    common.fresh_vhost()
    common.print_machine("bench/event_storm.py" + (" --quick" if args.quick else ""))
    with common.workdir(args.keep) as base, common.cluster(base) as cloud:
        daemon = cloud.start_daemon()
        daemon.wait_ready(60)
        pids = {"daemon": daemon.pid, "bench": os.getpid()}
        if (broker := common.broker_pid()) is not None:
            pids["broker"] = broker
        publisher = subprocess.Popen([sys.executable, __file__, "--raw-publisher", str(args.n)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            profile = base / "storm.prof.txt" if args.profile else None
            phases = asyncio.run(run(args.n, args.timeout, pids, publisher, profile))
            if profile is not None:
                common.summarize_profile(profile, title="daemon, power loss phase")
                print()
        finally:
            publisher.kill()
            publisher.wait()
        cloud.assert_alive()
        rss = common.proc_rss_bytes(daemon.pid)
    print(f"event storm: {args.n:,} changes reported by one node in reports of {BATCH}; "
          "time from the first report's publish to the last status_change event")
    rows = []
    for p in phases:
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in p.cpu.items())
        rows.append([p.name.replace("N", f"{p.n:,}"), p.seconds, p.rate, p.first_event * 1000,
                     cpu])
    common.print_table(["phase", "seconds", "events/s", "first event ms",
                        "CPU s (bench = fake agent + subscriber)"], rows)
    for p in phases:
        print(f"{p.name}: events by new status {dict(p.statuses)}")
    print(f"daemon RSS after the storm: {rss / 2**20:.0f} MiB")
    raw, storm = phases[0], phases[2]
    print()
    print(f"power loss / raw publishing of as many events: {storm.rate / raw.rate:.2f}")
    common.print_table(["target", "measured", "verdict"], [
        [f"power loss observations/s >= {TARGET:,.0f}", storm.rate,
         common.verdict(storm.rate >= TARGET)],
    ])
    print(f"\nload average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
