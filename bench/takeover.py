"""Takeover time of a standby vmd daemon on PostgreSQL: min/median/max over N SIGKILLs.

Two `vmd daemon` processes with the same settings on one fresh PostgreSQL database, one
memory-backend agent, the real broker (vhost `VMD_BENCH_VHOST`, re-created). Each round:
find the active daemon (its `/metrics` says `vmd_leader 1`), wait a random part of a
renewal interval (so the kill falls anywhere between two renewals, as a real death does),
SIGKILL it, send `GET /vm/status` at once and time its answer: it waits in `vmd.commands`
until the standby has taken the lease, restored the fleet, replayed the outbox and
consumed. The killed daemon is then started again (as systemd would) and must come back
as a standby before the next round. docs/ha.md "Figures" records the result.

    .venv/bin/python bench/takeover.py            # 10 kills, [daemon] lease = 10 s
    .venv/bin/python bench/takeover.py --kills 3 --lease 4 --vms 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import signal
import socket
import statistics
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import psycopg

from vmd.client import Client

NODE = "cn00.bench"
DAEMONS = ("daemon-a", "daemon-b")
# The PostgreSQL of the development and CI machines (trust auth), as the tests use it.
PG_SERVER = os.environ.get("VMD_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """A new database with a random name for the run; dropped afterwards (with the
    connections the daemons left), on connections of its own."""
    name = f"vmd_takeover_{secrets.token_hex(6)}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HaCluster(common.Cluster):
    """The benchmark cluster with two daemons on one PostgreSQL store."""

    pg_url: str = ""
    lease: float = 10.0
    ports: dict[str, int]

    def config_for(self, name: str) -> Path:
        text = self.daemon_config().read_text()
        text = text.replace(f'store = "{self.store}"', f'store = "{self.pg_url}"', 1)
        text = text.replace('metrics = "127.0.0.1:0"',
                            f'metrics = "127.0.0.1:{self.ports[name]}"\nlease = {self.lease}', 1)
        path = self.base / f"{name}.toml"
        path.write_text(text)
        return path

    def start_named(self, name: str) -> common.Proc:
        return self.spawn(name, self.vmd("daemon", "-c", str(self.config_for(name))))

    def leader_value(self, name: str) -> float | None:
        try:
            url = f"http://127.0.0.1:{self.ports[name]}/metrics"
            with urllib.request.urlopen(url, timeout=0.5) as response:
                text = response.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("vmd_leader "):
                return float(line.split()[1])
        return None

    def leader(self, timeout: float = 60.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = [n for n in DAEMONS if n in self.procs and self.leader_value(n) == 1]
            if len(found) == 1:
                return found[0]
            time.sleep(0.05)
        raise RuntimeError("no single leader")


async def one_kill(cloud: HaCluster, client: Client, renew_every: float) -> float:
    name = cloud.leader()
    await asyncio.sleep(random.uniform(0, renew_every))
    proc = cloud.procs.pop(name)
    proc.popen.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    proc.popen.wait()
    proc.notify.close()
    reply = await client.status_list()
    took = time.monotonic() - killed
    assert reply.code == 200, reply
    cloud.start_named(name)  # systemd's Restart=on-failure: back as a standby
    end = time.monotonic() + 30
    while cloud.leader_value(name) != 0:
        assert time.monotonic() < end, f"{name} did not come back as a standby"
        await asyncio.sleep(0.05)
    return took


async def run(cloud: HaCluster, kills: int, lease: float) -> list[float]:
    async with Client(common.amqp_url("admin"), timeout=lease * 6,
                      connection_name="bench-takeover") as client:
        end = time.monotonic() + 60
        while (await client.status_list()).code != 200 or not (
                (await client.status_list()).body.get("result")):
            assert time.monotonic() < end, "the fleet was never listed"
            await asyncio.sleep(0.2)
        return [await one_kill(cloud, client, lease / 5) for _ in range(kills)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--lease", type=float, default=10.0)
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    common.fresh_vhost()
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(common.workdir(args.keep))
        url = stack.enter_context(pg_database())
        cloud = HaCluster(base)
        stack.callback(cloud.stop)
        cloud.pg_url, cloud.lease = url, args.lease
        cloud.ports = {n: free_port() for n in DAEMONS}
        for name in DAEMONS:
            cloud.start_named(name)
        cloud.start_agent(NODE, args.vms).wait_ready(60)
        cloud.leader()
        times = asyncio.run(run(cloud, args.kills, args.lease))
    common.print_machine("vmd takeover: SIGKILL of the active daemon, two daemons on "
                         "PostgreSQL")
    print(f"lease {args.lease:g} s, {args.vms} VMs, {args.kills} kills: time from the kill "
          "to the first answer of a request sent right after it")
    common.print_table(
        ["min s", "median s", "max s"],
        [[f"{min(times):.2f}", f"{statistics.median(times):.2f}", f"{max(times):.2f}"]])
    print("each:", " ".join(f"{t:.2f}" for t in times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
