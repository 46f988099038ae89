"""Round-trip time of one `vmadm get` through each runner of the vmadm driver.

Runs the simulator (`vmd-vmadm`, timescale 0) on a fresh simulated node with one VM and
times `Vmadm.get()` (command + JSON parse) N times:

- local: `LocalRunner` (asyncio subprocess in its own process group);
- ssh: `SshRunner` over one kept connection to an in-process asyncssh server on 127.0.0.1
  that executes the received command line, as sshd would;
- `true` through each runner: a trivial command, to separate the runners' own cost from
  the simulator's start-up (a Python interpreter per call).

Usage: .venv/bin/python bench/runner_overhead.py [-n 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncssh

from vmd.config import SshSettings
from vmd.model import NodeName
from vmd.node_agent.driver import LocalRunner, SshRunner, Vmadm

BIN = Path(sys.executable).parent
VMADM = str(BIN / "vmd-vmadm")
CTL = str(BIN / "vmd-vmadm-ctl")


def make_handler(env: dict[str, str]) -> Callable[[asyncssh.SSHServerProcess[bytes]],
                                                  Awaitable[None]]:
    allowed = {VMADM, "true"}

    async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
        argv = shlex.split(process.command or "")
        if not argv or argv[0] not in allowed:
            process.stderr.write(b"command not allowed\n")
            process.exit(126)
            return
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True)
        out, err = await proc.communicate()
        process.stdout.write(out)
        process.stderr.write(err)
        process.exit(proc.returncode or 0)

    return handle


async def timed(n: int, cases: dict[str, Callable[[], Awaitable[object]]]) -> dict[
        str, list[float]]:
    """Interleaved: each iteration runs every case once, so load changes hit all alike."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for call in cases.values():
        await call()  # warm-up: connection set-up, caches
    for _ in range(n):
        for name, call in cases.items():
            start = time.perf_counter()
            await call()
            samples[name].append(time.perf_counter() - start)
    return samples


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * len(ordered)) - 1)]
    return (f"{name:<22} {len(samples):>5} {statistics.median(ordered) * 1000:>10.1f} "
            f"{p99 * 1000:>10.1f} {statistics.fmean(ordered) * 1000:>10.1f}")


def create_vm(env: dict[str, str]) -> str:
    created = subprocess.run(
        [CTL, "create", "--brand", "kvm", "--alias", "bench", "--hostname", "bench.example",
         "--owner", "8a1a4e6c-0000-4000-8000-000000000001", "--state", "running"],
        env=env, check=True, capture_output=True, text=True)
    return created.stdout.split()[-1]


async def main(n: int, tmp: str, sim_env: dict[str, str], uuid: str) -> None:
    env = {**os.environ, **sim_env}
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.listen(
        "127.0.0.1", 0, server_host_keys=[host_key],
        authorized_client_keys=asyncssh.import_authorized_keys(
            client_key.export_public_key().decode()),
        process_factory=make_handler(env), encoding=None)
    port = server.sockets[0].getsockname()[1]
    key_file, known = Path(tmp) / "id_ed25519", Path(tmp) / "known_hosts"
    client_key.write_private_key(str(key_file))
    known.write_text(f"[127.0.0.1]:{port} {host_key.export_public_key().decode()}")
    ssh = SshRunner(SshSettings(host="127.0.0.1", port=port, client_keys=(key_file,),
                                known_hosts=known))
    local = Vmadm(LocalRunner(env=sim_env), node=NodeName("bench"), vmadm=[VMADM])
    remote = Vmadm(ssh, node=NodeName("bench"), vmadm=[VMADM])
    try:
        results = await timed(n, {
            "local: vmadm get": lambda: local.get(uuid),
            "ssh: vmadm get": lambda: remote.get(uuid),
            "local: true": lambda: local.runner.run(["true"], timeout=10),
            "ssh: true": lambda: ssh.run(["true"], timeout=10),
        })
    finally:
        await ssh.aclose()
        server.close()
        await server.wait_closed()
    print(f"vmadm get round trip, simulator at timescale 0, {os.cpu_count()} CPUs")
    print(f"{'runner':<22} {'n':>5} {'median ms':>10} {'p99 ms':>10} {'mean ms':>10}")
    for name, samples in results.items():
        print(row(name, samples))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="iterations per runner")
    iterations = parser.parse_args().n
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "node"
        root.mkdir()
        sim_env = {"VMADM_SIM_ROOT": str(root), "VMADM_SIM_TIMESCALE": "0"}
        uuid = create_vm({**os.environ, **sim_env})
        asyncio.run(main(iterations, tmp, sim_env, uuid))
