"""Shared helpers of the performance benchmarks (`bench/commands.py`, `bench/event_storm.py`,
`bench/fleet.py`): the broker vhost, real `vmd daemon` / `vmd agent` processes, readiness
over the systemd notify protocol, latency statistics, machine facts and tables.

Why real processes: the figures must be vmd's cost as deployed (separate daemon and agent
processes, the real broker, a real SQLite file with FULL sync), not of an in-process shortcut.
Readiness is taken from `READY=1` on a `NOTIFY_SOCKET` the benchmark owns, exactly what systemd
would see, so "cold start to ready" is measured the way an operator experiences it.

Every benchmark runs in the vhost `vmd-bench` (created by `scripts/ensure-rabbitmq vmd-bench`),
which is deleted and re-created before each run so no queue of an earlier run distorts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# `VMD_BENCH_VHOST` picks another vhost (several people benchmarking on one broker).
VHOST = os.environ.get("VMD_BENCH_VHOST", "vmd-bench")
BIN = Path(sys.executable).parent
VMD = str(BIN / "vmd")


# `vmd ...` with uvloop's event loop policy installed first (asyncio.run then uses uvloop).
UVLOOP_LAUNCHER = (
    "import sys, uvloop; uvloop.install(); from vmd.cli.main import main; "
    "sys.exit(main(sys.argv[1:]))"
)


# The benchmarks' agent user: one for all their nodes (scripts/ensure-rabbitmq, bench vhosts
# only; a deployment has one per node, docs/security.md).
BENCH_AGENT = "vmd-agent-bench"


def amqp_url(user: str, vhost: str = VHOST) -> str:
    """The local broker for `user` (password = user name, scripts/ensure-rabbitmq)."""
    return f"amqp://{user}:{user}@127.0.0.1:5672/{vhost}"


def fresh_vhost(vhost: str = VHOST, attempts: int = 5) -> None:
    """Delete and re-create the benchmark vhost (users and permissions included). Retried:
    on a shared machine another suite may be restarting the broker application."""
    for attempt in range(1, attempts + 1):
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True,
                       check=False)
        done = subprocess.run([str(ROOT / "scripts" / "ensure-rabbitmq"), vhost],
                              capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return
        if attempt == attempts:
            raise RuntimeError(f"scripts/ensure-rabbitmq {vhost} failed: {done.stderr.strip()}")
        time.sleep(5)


# ----------------------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values, nearest-rank; NaN when empty."""
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


@dataclass
class Latencies:
    """Seconds per operation, summarised in milliseconds."""

    values: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.values.append(seconds)

    def summary(self) -> dict[str, float]:
        s = sorted(self.values)
        return {
            "n": float(len(s)),
            "p50_ms": percentile(s, 0.50) * 1000,
            "p99_ms": percentile(s, 0.99) * 1000,
            "max_ms": (s[-1] * 1000) if s else float("nan"),
        }


# ----------------------------------------------------------------------------- processes


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (and its reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def proc_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def broker_pid() -> int | None:
    """The RabbitMQ VM (beam.smp), to count the broker's CPU next to ours."""
    out = subprocess.run(["pgrep", "-o", "beam.smp"], capture_output=True, text=True,
                         check=False).stdout.split()
    return int(out[0]) if out else None


class CpuMeter:
    """CPU seconds used by named processes between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def start(self) -> None:
        self.before = {name: proc_cpu_seconds(pid) for name, pid in self.pids.items()}
        self.used = {}

    def stop(self) -> dict[str, float]:
        self.used = {name: proc_cpu_seconds(pid) - self.before[name]
                     for name, pid in self.pids.items()}
        return self.used


class Notify:
    """A NOTIFY_SOCKET of our own: records when each process sent READY=1.

    Read continuously by a thread, as systemd does: vmd sends STATUS= updates all along
    and a full socket buffer would block its sender."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, name=f"notify:{path.name}",
                                        daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            if not data:
                return
            self.messages.append((time.perf_counter(), data.decode(errors="replace")))

    def ready_at(self) -> float | None:
        """When the process became ready to serve. A daemon on a PostgreSQL store first
        sends READY=1 as a standby (STATUS=standby: ...), then READY=1 again once it holds
        the lease and restored the store: that second one is what the benchmarks wait for."""
        for at, text in list(self.messages):
            lines = text.splitlines()
            if "READY=1" in lines and not any(line.startswith("STATUS=standby")
                                              for line in lines):
                return at
        return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.path.unlink(missing_ok=True)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    notify: Notify
    log: Path
    spawned: float

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_ready(self, timeout: float) -> float:
        """Seconds from spawn to READY=1; raises with the log tail if it died or timed out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            at = self.notify.ready_at()
            if at is not None:
                return at - self.spawned
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n"
                                   f"{self.tail()}")
            time.sleep(0.005)
        raise RuntimeError(f"{self.name} not ready within {timeout:g}s:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Cluster:
    """A daemon and memory-backend agents as real processes, configured in `base`."""

    base: Path
    daemon_user: str = "vmd"
    # The nodes the agents serve (the daemon's [auth.agents]): by default the node names
    # bench/commands.py and bench/event_storm.py use.
    agent_nodes: tuple[str, ...] = (*(f"cn{k:02d}.bench" for k in range(100)), "storm.bench")
    admins: tuple[str, ...] = ("admin",)
    log_level: str = "info"  # the shipped default: per-message logging shows in the cost
    procs: dict[str, Proc] = field(default_factory=dict)
    daemon_extra: str = ""
    # More `[auth]` tables, e.g. `[auth.owners]` (bench/loop_lag.py).
    auth_extra: str = ""
    # Run vmd's processes on uvloop (a measurement lever; vmd itself uses asyncio's loop).
    uvloop: bool = False
    # Or through this Python file (`python FILE daemon -c ...`), to try a change before
    # making it (e.g. a monkeypatch), A/B against the same run.
    launcher: str | None = os.environ.get("VMD_BENCH_LAUNCHER")

    # The daemon's `[daemon] store` when not the SQLite file `store`: a PostgreSQL URL
    # (`pg_database()`), for the benchmarks' `--store postgresql`.
    store_url: str | None = None

    @property
    def store(self) -> Path:
        return self.base / "vmd.sqlite3"

    def daemon_config(self) -> Path:
        path = self.base / "daemon.toml"
        admins = ", ".join(f'"{a}"' for a in self.admins)
        path.write_text(f"""\
[broker]
url = "{amqp_url(self.daemon_user)}"

[daemon]
store = "{self.store_url or self.store}"
shard = 0
metrics = "127.0.0.1:0"
heartbeat_interval = 5
reconcile_interval = 3600
drain_timeout = 10
{self.daemon_extra}

[auth]
admins = [{admins}]
{self.auth_extra}
{self.agents_toml()}
[log]
level = "{self.log_level}"
format = "json"
""")
        return path

    def agents_toml(self) -> str:
        """`[auth.agents]`: the benchmarks' one agent user speaks for `agent_nodes`."""
        nodes = ", ".join(f'"{n}"' for n in self.agent_nodes)
        return f'[auth.agents]\n"{BENCH_AGENT}" = [{nodes}]\n'

    def agent_config(self, node: str, vms: int, extra: str = "") -> Path:
        path = self.base / f"agent-{node}.toml"
        path.write_text(f"""\
[broker]
url = "{amqp_url(BENCH_AGENT)}"

[agent]
node = "{node}"
backend = "memory"
heartbeat_interval = 5
poll_interval = 3600
metrics = "127.0.0.1:0"
state_dir = "{self.base / 'agent-state' / node}"
max_parallel = 256
drain_timeout = 10
{extra}

[agent.memory]
vms = {vms}

[log]
level = "{self.log_level}"
format = "json"
""")
        return path

    def spawn(self, name: str, argv: list[str]) -> Proc:
        notify = Notify(self.base / f"notify-{name}.sock")
        log = self.base / f"{name}.log"
        env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
        spawned = time.perf_counter()
        popen = subprocess.Popen(argv, env=env, stdout=log.open("ab"),
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        proc = Proc(name, popen, notify, log, spawned)
        self.procs[name] = proc
        return proc

    def vmd(self, *args: str) -> list[str]:
        if self.launcher:
            return [sys.executable, self.launcher, *args]
        if not self.uvloop:
            return [VMD, *args]
        return [sys.executable, "-c", UVLOOP_LAUNCHER, *args]

    def start_daemon(self) -> Proc:
        return self.spawn("daemon", self.vmd("daemon", "-c", str(self.daemon_config())))

    def start_agent(self, node: str, vms: int, extra: str = "") -> Proc:
        return self.spawn(f"agent-{node}",
                          self.vmd("agent", "-c", str(self.agent_config(node, vms, extra))))

    def stop(self, name: str | None = None, timeout: float = 30) -> None:
        """SIGTERM (all, or one), wait, SIGKILL what did not exit."""
        names = [name] if name else list(self.procs)
        for n in names:
            p = self.procs[n].popen
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for n in names:
            proc = self.procs.pop(n)
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
            proc.notify.close()

    def assert_alive(self) -> None:
        for proc in self.procs.values():
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n"
                                   f"{proc.tail()}")


# The PostgreSQL of the development and CI machines (trust auth), for `--store postgresql`.
PG_SERVER = os.environ.get("VMD_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


@contextlib.contextmanager
def pg_database(prefix: str = "vmd_bench") -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database with a random name; dropped afterwards
    (with any connection a daemon left open), as tests/support/postgres.py does."""
    import psycopg  # only the PostgreSQL runs need the driver loaded

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{PG_SERVER}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_backend_pids(url: str) -> list[int]:
    """The server processes serving connections to `url`'s database (the daemon's store):
    on PostgreSQL the store's work is in them, not in the daemon, and a CPU figure must
    count it."""
    import psycopg

    database = url.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s "
                             "AND pid <> pg_backend_pid()", (database,)).fetchall()
    return [int(pid) for (pid,) in rows]


@contextlib.contextmanager
def workdir(keep: bool = False) -> Iterator[Path]:
    # Short path: AF_UNIX socket paths are limited to 108 bytes.
    path = Path(tempfile.mkdtemp(prefix="vmdb-"))
    try:
        yield path
    finally:
        if keep:
            print(f"(kept {path})")
        else:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def cluster(base: Path, **kwargs: object) -> Iterator[Cluster]:
    c = Cluster(base, **kwargs)  # type: ignore[arg-type]
    try:
        yield c
    finally:
        c.stop()


# ----------------------------------------------------------------------------- reporting


def machine() -> dict[str, str]:
    """What the figures were measured on (printed with every run)."""
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.1f} GiB"
    rabbit = subprocess.run(["rabbitmqctl", "-q", "version"], capture_output=True, text=True,
                            check=False).stdout.strip() or "?"
    versions = []
    for dist in ("aio-pika", "aiormq", "orjson", "uvloop"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} -")
    return {
        "cpu": f"{os.cpu_count()} x {cpu}",
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "rabbitmq": rabbit,
        "libraries": ", ".join(versions),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def print_machine(title: str) -> None:
    print(f"== {title}")
    for key, value in machine().items():
        print(f"   {key:<9} {value}")
    print()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain aligned table (first column left, the others right)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                          for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    print(line(cells[0]))
    print("-+-".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


async def sleep_until(t: float) -> None:
    """Sleep until `time.perf_counter()` reaches t (pacing of open-loop load)."""
    delay = t - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


# ----------------------------------------------------------------------------- profiles


class Profiler:
    """py-spy attached to a process (sampling, another process: the target is not slowed
    by an in-process profiler), written as collapsed stacks for `summarize_profile`."""

    def __init__(self, pid: int, out: Path, rate: int = 200) -> None:
        self.out = out
        exe = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
        if exe is None:
            raise RuntimeError("py-spy is not installed (.venv/bin/pip install py-spy)")
        self.popen = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--format", "raw", "--nolineno", "--rate",
             str(rate), "--nonblocking", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> Path:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        return self.out


def summarize_profile(path: Path, top: int = 20, title: str = "") -> None:
    """Print the functions with the most samples: own (self) and inclusive (cumulative)."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    if not path.exists():
        print(f"(no profile at {path})")
        return
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f.strip() for f in stack.split(";")[1:]]  # [0] is the process
        if not frames:
            continue
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    print(f"profile {title or path.name}: {total:,} samples (CPU only; py-spy --nonblocking)")
    rows: list[list[object]] = []
    by_own = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    for frame, count in by_own:
        rows.append([_short(frame), 100.0 * count / total, 100.0 * inclusive[frame] / total])
    print_table(["function (by own samples)", "own %", "incl %"], rows)
    print()
    ours = sorted(((f, c) for f, c in inclusive.items() if "vmd/" in f or "(vmd" in f),
                  key=lambda kv: -kv[1])[:top]
    print_table(["vmd function (by inclusive samples)", "incl %"],
                [[_short(f), 100.0 * c / total] for f, c in ours])


def _short(frame: str) -> str:
    return frame if len(frame) <= 90 else frame[:87] + "..."
