"""Two `vmd daemon` processes on one PostgreSQL store: takeover, fencing, a database restart.

Real processes throughout: two daemons with the same settings on a fresh database (each
test creates its own and drops it), a `vmd agent` per simulated node on the `vmd-vmadm`
simulator, the real broker (`VMD_TEST_VHOST`). The load (load.py) keeps requests flowing
over a dozen VMs and sends a request again with the same `message_id` when its answer is
late; the scenario then checks every invariant of invariants.py (every request answered,
nothing answered differently, every task ended, the simulator's calls log with no action
run twice for a task, events without gaps).

systemd is played by `HaCloud.supervise`: a daemon that exits with anything but 0 (SIGKILL,
a step-down's exit 3, a crash's 1) is started again after `RESTART_SEC`, as
`Restart=on-failure` does, and comes back as a standby.

The database-restart test restarts the cluster that serves the test's store (the one
`VMD_TEST_PG` names, 127.0.0.1:5432 by default): on a shared development machine point it
at a private cluster (`pg_createcluster 15 ha --port 5439 --start`, trust auth on
127.0.0.1), as docs/ha.md says; CI restarts its own `15 main`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.cloud import BIN, base_env
from support.postgres import SERVER, store_url

from vmd.daemon.leadership import MARGIN_FRACTION

from .cluster import RelCloud, Timing
from .conftest import report
from .scenarios import Ctx, Env, Scale, run_scenario

pytestmark = pytest.mark.slow

DAEMONS = ("daemon-a", "daemon-b")
LEASE = 4.0  # [daemon] lease of the test daemons (s): short, so a takeover takes seconds
POLL = 1.0  # vmd.daemon.leadership.POLL
RESTART_SEC = 0.5
# docs/ha.md "Takeover bound": a standby answers at most lease + poll + its start (restore,
# outbox, connect, consume) after the leader died. The start of a dozen VMs is well under a
# second; the slack is for two busy CPUs shared with the rest of the suite.
START_SLACK = 4.0
TAKEOVER_BOUND = LEASE + POLL + START_SLACK


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class HaCloud(RelCloud):
    """A `RelCloud` with two daemons on one PostgreSQL store, and systemd's restarts."""

    pg_url: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    exits: list[tuple[str, int]] = field(default_factory=list)
    stopping: bool = False
    _supervisor: asyncio.Task[None] | None = None

    @property
    def store(self) -> Any:  # the URL, where RelCloud has a file
        return self.pg_url

    def daemon_config(self) -> Path:
        path = super().daemon_config()
        text = path.read_text().replace("drain_timeout = 5\n",
                                        f"drain_timeout = 5\nlease = {LEASE}\n", 1)
        path.write_text(text)
        return path

    def config_for(self, name: str) -> Path:
        port = self.ports.setdefault(name, _free_port())
        text = self.daemon_config().read_text()
        text, n = re.subn(r'(?m)^metrics = .*$', f'metrics = "127.0.0.1:{port}"', text)
        assert n == 1
        path = self.base / f"{name}.toml"
        path.write_text(text)
        return path

    def start_daemon(self, name: str = DAEMONS[0]) -> None:  # type: ignore[override]
        self._spawn(name, [str(BIN / "vmd"), "daemon", "-c", str(self.config_for(name))],
                    base_env())

    def start(self) -> None:
        for name in DAEMONS:
            self.start_daemon(name)
        for node in self.nodes:
            self.start_agent(node)
        self._supervisor = asyncio.get_running_loop().create_task(self.supervise())

    async def supervise(self) -> None:
        """`Restart=on-failure`, `RestartSec=`: a daemon that failed comes back."""
        while not self.stopping:
            for name in DAEMONS:
                proc = self.procs[name]
                code = proc.poll()
                if code is not None and code != 0 and not self.stopping:
                    self.exits.append((name, code))
                    await asyncio.sleep(RESTART_SEC)
                    if not self.stopping:
                        self.start_daemon(name)
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        self.stopping = True
        super().stop()

    # -- what each daemon says about itself -------------------------------------------------

    def metric(self, name: str, family: str) -> float | None:
        """One sample from daemon `name`'s /metrics; None when it does not answer."""
        url = f"http://127.0.0.1:{self.ports[name]}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=0.5) as response:
                text = response.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(family + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    async def leaders(self) -> dict[str, float | None]:
        names = [n for n in DAEMONS if self.alive(n)]
        values = await asyncio.gather(*(asyncio.to_thread(self.metric, n, "vmd_leader")
                                        for n in names))
        return dict(zip(names, values, strict=True))

    async def leader(self, timeout: float = 30.0) -> str:
        """The one daemon that says `vmd_leader 1` (waits for it)."""
        end = time.monotonic() + timeout
        while True:
            found = [n for n, v in (await self.leaders()).items() if v == 1]
            if len(found) == 1:
                return found[0]
            assert time.monotonic() < end, f"no single leader: {await self.leaders()}"
            await asyncio.sleep(0.1)


class LeaderWatch:
    """Samples both daemons' `vmd_leader` all along: never both 1 at one instant (two
    reads made within the lease's margin of each other)."""

    def __init__(self, cloud: HaCloud) -> None:
        self.cloud = cloud
        self.samples = 0
        self.both: list[dict[str, float | None]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        names = list(DAEMONS)
        while True:
            reads = await asyncio.gather(*(asyncio.to_thread(self._read, n) for n in names))
            self.samples += 1
            ones = [(start, end) for value, start, end in reads if value == 1]
            # Two reads are one instant only if both were made within the design's margin:
            # a leader's local deadline ends MARGIN_FRACTION x lease before a standby may
            # take the lease, so two 1s read closer together than that are two leaders at
            # once; two read further apart (a read queued on a loaded machine) are not.
            if len(ones) > 1 and (max(e for _, e in ones) - min(s for s, _ in ones)
                                  < LEASE * MARGIN_FRACTION):
                self.both.append(dict(zip(names, (r[0] for r in reads), strict=True)))
            await asyncio.sleep(0.05)

    def _read(self, name: str) -> tuple[float | None, float, float]:
        start = time.monotonic()
        value = self.cloud.metric(name, "vmd_leader") if self.cloud.alive(name) else None
        return value, start, time.monotonic()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def ha_cloud(pg_url: str):  # type: ignore[no-untyped-def]
    def factory(base: Path, broker_url: str, *, timing: Timing) -> HaCloud:
        return HaCloud(base, broker_url, timing=timing, pg_url=pg_url)
    return factory


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database; created and dropped on connections of their own (the test may
    restart the server in between, which ends any connection held across it)."""
    name = f"vmd_ha_{secrets.token_hex(6)}"
    with psycopg.connect(store_url("postgres"), autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield store_url(name)
    finally:
        with psycopg.connect(store_url("postgres"), autocommit=True,
                             connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _first_answer_after(ctx: Ctx, t: float) -> float | None:
    times = [a.at for r in ctx.load.reqs for a in r.answers if a.at > t]
    return min(times) - t if times else None


async def _setup(ctx: Ctx) -> None:
    ctx.load.retry_after = 3.0  # the client retries a late answer with the same message_id
    watch = LeaderWatch(ctx.cloud)  # type: ignore[arg-type]
    watch.start()
    ctx.extra["_watch"] = watch
    ctx.extra["takeover_s"] = []
    ctx.extra["first_answer_s"] = []
    ctx.extra["_node_events"] = len(ctx.recorder.node_events)  # the boot's


async def _finish(ctx: Ctx) -> None:
    # After the last fault: the watch and the figures of the takeovers.
    watch: LeaderWatch = ctx.extra.pop("_watch")
    await watch.stop()
    ctx.extra["leader_samples"] = watch.samples
    ctx.extra["both_leaders"] = len(watch.both)
    cloud: HaCloud = ctx.cloud  # type: ignore[assignment]
    ctx.extra["exits"] = list(cloud.exits)
    # Node health resumes from the store at a takeover: no node.<node>.status event (a
    # node gone unreachable and back) during the run.
    ctx.extra["node_events"] = len(ctx.recorder.node_events) - ctx.extra.pop("_node_events")


# -- (a) SIGKILL of the active daemon mid-load ----------------------------------------------


async def kill_leader(ctx: Ctx, i: int) -> None:
    cloud: HaCloud = ctx.cloud  # type: ignore[assignment]
    old = await cloud.leader()
    old_pid = cloud.pid(old)
    killed_at = time.monotonic()
    await cloud.kill_async(old)
    # The standby, or the killed one restarted meanwhile (both wait for the lease's end).
    new = await cloud.leader(timeout=TAKEOVER_BOUND + 10)
    assert cloud.pid(new) != old_pid
    ctx.extra["takeover_s"].append(round(time.monotonic() - killed_at, 2))
    # The first answer after the kill: the new leader's (the old one is dead); the load is
    # continuous, so it comes as soon as the new one consumes.
    end = time.monotonic() + TAKEOVER_BOUND + 10
    while (first := _first_answer_after(ctx, killed_at + 0.2)) is None:
        assert time.monotonic() < end, "no answer after the takeover"
        await asyncio.sleep(0.1)
    ctx.extra["first_answer_s"].append(round(first + 0.2, 2))
    await cloud.leader()  # the killed one is back (as a standby) before the next round
    if i == ctx.extra.get("_last", -1):
        await _finish(ctx)


@pytest.mark.timeout(300)
async def test_sigkill_of_the_active_daemon_under_load(rel_env: Env, pg_url: str) -> None:
    scale = Scale(repeats=2, gap=3.0)

    async def setup(ctx: Ctx) -> None:
        await _setup(ctx)
        ctx.extra["_last"] = scale.repeats - 1

    figures = await run_scenario(rel_env, "ha-kill", scale, kill_leader, setup=setup,
                                 cloud_factory=ha_cloud(pg_url))
    report(figures)
    figures.extra.pop("_last", None)
    figures.assert_ok()
    assert figures.extra["both_leaders"] == 0
    assert figures.extra["node_events"] == 0
    assert figures.calls.power_tasks > 0, "the load ran no power task"
    # Each kill is one SIGKILL exit (-9) and nothing else (no step-down, no crash).
    assert [code for _, code in figures.extra["exits"]] == [-signal.SIGKILL] * scale.repeats
    assert max(figures.extra["first_answer_s"]) <= TAKEOVER_BOUND, figures.extra


# -- (b) SIGSTOP until the standby took over, then SIGCONT -----------------------------------


async def freeze_leader(ctx: Ctx, i: int) -> None:
    cloud: HaCloud = ctx.cloud  # type: ignore[assignment]
    old = await cloud.leader()
    proc = cloud.procs[old]
    ctx.extra.setdefault("exits_before", list(cloud.exits))
    stopped_at = time.monotonic()
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        others = [n for n in DAEMONS if n != old]
        end = time.monotonic() + TAKEOVER_BOUND + 10
        while (await cloud.leaders()).get(others[0]) != 1:
            assert time.monotonic() < end, "the standby did not take over"
            await asyncio.sleep(0.05)
        ctx.extra["takeover_s"].append(round(time.monotonic() - stopped_at, 2))
        # Still frozen; its broker connection may well still be up (heartbeat = lease).
    finally:
        log_size = len(cloud.log(old))
        os.kill(proc.pid, signal.SIGCONT)
    # Resumed, it sees its deadline passed at its first check and exits 3 (step-down), or,
    # frozen in the middle of a write, finds that the taker ended its store session and
    # exits 1 on that error; systemd (the supervisor) starts it again as a standby.
    end = time.monotonic() + 15
    while not any(n == old for n, _ in cloud.exits[len(ctx.extra["exits_before"]):]):
        assert time.monotonic() < end, f"{old} did not step down: {cloud.exits}"
        await asyncio.sleep(0.05)
    code = cloud.exits[-1][1]
    after = cloud.log(old)[log_size:]
    assert code in (1, 3), (code, after[-2000:])
    assert ('"stepping down' in after) if code == 3 else ("administrator command" in after), \
        after[-2000:]
    ctx.extra["exits_before"] = list(cloud.exits)
    await cloud.leader()
    if i == ctx.extra.get("_last", -1):
        await _finish(ctx)


@pytest.mark.timeout(300)
async def test_sigstop_of_the_active_daemon_then_sigcont(rel_env: Env, pg_url: str) -> None:
    scale = Scale(repeats=2, gap=3.0)

    async def setup(ctx: Ctx) -> None:
        await _setup(ctx)
        ctx.extra["_last"] = scale.repeats - 1

    figures = await run_scenario(rel_env, "ha-freeze", scale, freeze_leader, setup=setup,
                                 cloud_factory=ha_cloud(pg_url))
    figures.extra.pop("_last", None)
    report(figures)
    figures.assert_ok()
    assert figures.extra["both_leaders"] == 0
    assert figures.extra["node_events"] == 0
    figures.extra.pop("exits_before", None)
    codes = [code for _, code in figures.extra["exits"]]
    assert len(codes) == scale.repeats and set(codes) <= {1, 3}, codes
    # The resumed process wrote, published and acked nothing after it lost the lease: no
    # action ran twice (calls), no answer differs from the first, no event broke its chain
    # (assert_ok above), and it exited 3 at its first check.


# -- (c) the PostgreSQL cluster restarted under load -----------------------------------------


def _cluster_of(server: str) -> tuple[str, str]:
    """(version, name) of the local cluster that listens on the port of `server`."""
    port = re.search(r":(\d+)(/|$)", server.split("@")[-1])
    wanted = port.group(1) if port else "5432"
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    for line in out.splitlines():
        version, name, cport, *_ = line.split()
        if cport == wanted:
            return version, name
    raise AssertionError(f"no local cluster on port {wanted}: {out}")


async def restart_postgres(ctx: Ctx, i: int) -> None:
    cloud: HaCloud = ctx.cloud  # type: ignore[assignment]
    version, name = _cluster_of(SERVER)
    await cloud.leader()
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        "pg_ctlcluster", version, name, "restart", "-m", "fast",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    ctx.extra.setdefault("pg_restart_s", []).append(round(time.monotonic() - t0, 2))
    await cloud.leader(timeout=TAKEOVER_BOUND + 20)
    ctx.extra.setdefault("leader_back_s", []).append(round(time.monotonic() - t0, 2))
    if i == ctx.extra.get("_last", -1):
        await _finish(ctx)


@pytest.mark.timeout(300)
async def test_postgres_restart_under_load(rel_env: Env, pg_url: str) -> None:
    scale = Scale(repeats=1, gap=3.0)

    async def setup(ctx: Ctx) -> None:
        await _setup(ctx)
        ctx.extra["_last"] = scale.repeats - 1

    figures = await run_scenario(rel_env, "ha-pg-restart", scale, restart_postgres,
                                 setup=setup, cloud_factory=ha_cloud(pg_url))
    figures.extra.pop("_last", None)
    report(figures)
    figures.assert_ok()
    assert figures.extra["both_leaders"] == 0
    assert figures.extra["node_events"] == 0
    # docs/ha.md: the active daemon's next write fails, it exits 1 (a store it lost) or 3
    # (a lease it could not renew) and comes back as a standby; nothing else exits.
    assert all(code in (1, 3) for _, code in figures.extra["exits"]), figures.extra["exits"]
