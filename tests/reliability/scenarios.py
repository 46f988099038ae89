"""The fault scenarios, one function each, the same for CI (short) and the long run (`Scale`).

Each scenario boots a `RelCloud` (real daemon, real agents, simulated nodes), binds the
event recorder, runs the load and the node chaos, injects its fault `scale.repeats` times
with `scale.gap` seconds of load between, stops the load, and then checks every invariant
of invariants.py. The result is a `Figures` record: what ran (repeats, load) and what was
counted (requests, answers, duplicates, lost changes, stuck VMs ...), which the tests
assert on and the long run prints for docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
from support.proxy import TcpProxy

from . import chaos
from .cluster import RelCloud, Timing, VmInfo, build_fleet, create_vm
from .events import EventChecks, EventRecorder
from .invariants import (
    AnswerChecks,
    CallChecks,
    StuckWatch,
    check_answers,
    check_calls,
    converge,
    events_settle,
    vmd_view,
)
from .load import Load


@dataclass(frozen=True)
class Env:
    """Where scenarios run: the broker vhost, URLs per user, a scratch directory."""

    vhost: str
    base: Path
    url_for: Callable[[str], str]


@dataclass(frozen=True)
class Scale:
    repeats: int = 2
    nodes: int = 2
    per_node: int = 6
    concurrency: int = 6
    pause: float = 0.05  # per worker, between its requests
    gap: float = 3.0  # seconds of load before each fault, and after the last
    chaos_every: float = 0.4


@dataclass
class Figures:
    scenario: str
    repeats: int
    scale: Scale
    seconds: float = 0.0
    vms: int = 0
    node_changes: int = 0
    answers: AnswerChecks = field(default_factory=AnswerChecks)
    events: EventChecks = field(default_factory=EventChecks)
    calls: CallChecks = field(default_factory=CallChecks)
    stuck: int = 0
    stuck_samples: int = 0
    converged_in: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def lost_changes(self) -> int:
        return self.events.lost_changes + int(self.extra.get("events_behind", 0))

    @property
    def duplicates(self) -> int:
        return self.answers.duplicates + self.calls.excess

    def assert_ok(self) -> None:
        """The invariants: nothing lost, nothing twice, nothing stuck."""
        bad = {
            "unanswered requests": self.answers.unanswered,
            "stray answers": self.answers.stray,
            "duplicates (executed twice)": self.duplicates,
            "lost changes": self.lost_changes,
            "stuck VMs": self.stuck,
            "daemon or agent died": int(self.extra.get("died", 0)),
        }
        bad = {k: v for k, v in bad.items() if v}
        assert not bad, f"{self.scenario}: {bad}\n" + "\n".join(self.problems[:30])

    def summary(self) -> dict[str, Any]:
        a = self.answers
        return {
            "scenario": self.scenario, "repeats": self.repeats, "seconds": round(self.seconds, 1),
            "vms": self.vms, "concurrency": self.scale.concurrency,
            "node_changes": self.node_changes, "requests": a.requests, "answers": a.answers,
            "retried": a.retried, "repeated_answers": a.repeated,
            "unanswered": a.unanswered, "duplicates": self.duplicates,
            "lost_changes": self.lost_changes, "stuck_vms": self.stuck,
            "events": self.events.events, "event_repeats": self.events.repeats,
            "power_tasks": self.calls.power_tasks, "power_calls": self.calls.power_calls,
            "converged_in": round(self.converged_in, 2),
            "codes": dict(sorted(a.by_code.items())), "retry_reasons": dict(a.retry_reasons),
            **self.extra,
        }


@dataclass
class Ctx:
    """What a fault function may touch."""

    env: Env
    cloud: RelCloud
    load: Load
    fleet: list[VmInfo]
    timing: Timing
    proxy: TcpProxy | None
    recorder: EventRecorder
    rng: random.Random
    extra: dict[str, Any]


Fault = Callable[[Ctx, int], Awaitable[None]]


async def wait_listed(load: Load, cloud: RelCloud, uuids: set[str], timeout: float = 40) -> None:
    end = time.monotonic() + timeout
    while True:
        cloud.assert_alive()
        answer = await load.call("admin", "GET", "/vm/status")
        result = answer.body.get("result") or []
        seen = {vm["uuid"] for vm in result if vm["node_status"] == "online"}
        if uuids <= seen:
            return
        if time.monotonic() > end:
            raise AssertionError(f"VMs not listed online in time: {sorted(uuids - seen)}")
        await asyncio.sleep(0.3)


@contextlib.asynccontextmanager
async def booted(env: Env, name: str, scale: Scale, timing: Timing, *, proxy: bool = False,
                 extra_vms: int = 0, cloud_factory: Callable[..., RelCloud] = RelCloud
                 ) -> AsyncIterator[Ctx]:
    """A running cloud with its fleet, the event recorder and the load's links.
    `cloud_factory(base, broker_url, timing=...)` builds it (test_ha.py: two daemons)."""
    tcp = TcpProxy("127.0.0.1", 5672) if proxy else None
    if tcp is not None:
        await tcp.start()

    def url_for(user: str) -> str:
        return tcp.url(user, user, env.vhost) if tcp is not None else env.url_for(user)

    base = env.base / name
    base.mkdir(parents=True, exist_ok=True)
    cloud = cloud_factory(base, url_for("vmd"), timing=timing)
    # As the daemon's user (it may read every event it publishes; a name it may declare).
    recorder = EventRecorder(url_for("vmd"), f"vmd.rel.events.{name}")
    try:
        fleet = await build_fleet(cloud, scale.nodes, scale.per_node)
        for i in range(extra_vms):
            node = cloud.nodes[i % len(cloud.nodes)]
            fleet.append(await create_vm(node, f"x{i:02d}.{node.name}.example.com",
                                         brand="kvm", user="alice", state="running"))
        await recorder.start()
        cloud.start()
        async with Load(url_for, fleet, timing) as load:
            await wait_listed(load, cloud, {vm.uuid for vm in fleet})
            load.reqs.clear()  # the figures count from here
            yield Ctx(env, cloud, load, fleet, timing, tcp, recorder, random.Random(name), {})
    finally:
        await asyncio.to_thread(cloud.stop)
        await recorder.close(delete=False)
        with contextlib.suppress(Exception):
            await _delete_queue(env.url_for("vmd"), recorder.queue)
        if tcp is not None:
            await tcp.close()


async def _delete_queue(url: str, queue: str) -> None:
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)


async def run_scenario(env: Env, name: str, scale: Scale, fault: Fault, *,
                       timing: Timing | None = None, proxy: bool = False, extra_vms: int = 0,
                       load_fleet: Callable[[list[VmInfo]], list[VmInfo]] | None = None,
                       setup: Callable[[Ctx], Awaitable[None]] | None = None,
                       cloud_factory: Callable[..., RelCloud] = RelCloud) -> Figures:
    timing = timing or Timing()
    figures = Figures(name, scale.repeats, scale)
    started = time.monotonic()
    async with booted(env, name, scale, timing, proxy=proxy, extra_vms=extra_vms,
                      cloud_factory=cloud_factory) as ctx:
        phases = {"boot": time.monotonic()}
        recorder = ctx.recorder
        if setup is not None:
            await setup(ctx)
        load = ctx.load
        if load_fleet is not None:
            load.fleet = load_fleet(ctx.fleet)
        stuck = StuckWatch(load, timing, ctx.fleet)
        node_chaos = chaos.NodeChaos(ctx.cloud, load.fleet, every=scale.chaos_every)
        stuck.start()
        node_chaos.start()
        traffic = asyncio.create_task(load.run(concurrency=scale.concurrency, pause=scale.pause))
        try:
            for i in range(scale.repeats):
                await asyncio.sleep(scale.gap)
                await fault(ctx, i)
            await asyncio.sleep(scale.gap)
        finally:
            phases["load"] = time.monotonic()
            load.stop()
            await node_chaos.stop()
            await traffic
        phases["drain"] = time.monotonic()
        await stuck.sample()
        await stuck.stop()
        figures.converged_in = await converge(ctx.cloud, load, timing.reconcile_bound)
        behind = await events_settle(recorder, load)
        figures.extra.update(ctx.extra)
        figures.extra["events_behind"] = len(behind)
        figures.problems += behind
        figures.events = recorder.check()
        figures.calls = await check_calls(ctx.cloud, load, recorder)
        figures.answers = check_answers(load)
        _dump(ctx, figures)
        figures.stuck = len(stuck.stuck)
        figures.stuck_samples = stuck.samples
        figures.node_changes = node_chaos.changes
        figures.vms = len(await vmd_view(load))
        phases["checks"] = time.monotonic()
        figures.extra["phases_s"] = {
            k: round(v - started, 1) for k, v in phases.items()}
        figures.problems += (figures.answers.problems + figures.events.problems
                             + figures.calls.problems + stuck.problems)
        died = [n for n in ctx.cloud.procs if not ctx.cloud.alive(n)]
        figures.extra["died"] = len(died)
        figures.problems += [f"{n} is not running:\n{ctx.cloud.log(n)[-2000:]}" for n in died]
        drift = _metric(ctx.cloud, "vmd_drift_corrected_total")
        if drift is not None:
            figures.extra["drift_corrected"] = int(drift)
    figures.seconds = time.monotonic() - started
    return figures


def _dump(ctx: Ctx, figures: Figures) -> None:
    """What the load saw, next to the processes' logs (for a failing run's post-mortem)."""
    with (ctx.cloud.base / "requests.jsonl").open("w") as out:
        for r in ctx.load.reqs:
            out.write(json.dumps({
                "message_id": r.message_id, "user": r.user, "op": r.op, "method": r.method,
                "path": r.path, "data": r.data, "stream": r.stream, "attempts": r.attempts,
                "errors": r.errors, "unanswered": r.unanswered,
                "answers": [[a.correlation_id, a.code, a.body, a.at] for a in r.answers],
            }) + "\n")
    (ctx.cloud.base / "figures.json").write_text(json.dumps(figures.summary(), indent=1))


def _metric(cloud: RelCloud, name: str) -> float | None:
    """A counter from the running daemon's /metrics (its address is in its log)."""
    url = None
    for line in cloud.log("daemon").splitlines():
        if '"metrics served"' in line:
            with contextlib.suppress(ValueError):
                url = json.loads(line).get("url")
    if not url:
        return None
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total
