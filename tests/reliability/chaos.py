"""Faults: node changes nobody asked vmd for, and the broker, daemon and agent failures.

`NodeChaos` changes the nodes behind vmd's back all along a scenario, as guests and
operators do: crashes, in-guest power-offs and reboots of the load's VMs, and short-lived
VMs created and destroyed (they end `notcreated` in vmd). Only `vmd-vmadm-ctl` is used, so
the simulator's `calls` log holds vmd's own vmadm calls only.

The broker faults are what an operator or a network does to RabbitMQ: connections cut
(the TCP proxy, or `rabbitmqctl close_all_connections -p <vhost>`) and a full restart of the
broker application (`rabbitmqctl stop_app` / `start_app`, waited for with `await_startup`).
"""

from __future__ import annotations

import asyncio
import random
import shutil
from collections import Counter

from .cluster import RelCloud, VmInfo, create_vm, ctl, run


class NodeChaos:
    """Out-of-band changes every `every` seconds (± 50 %) until `stop()`."""

    def __init__(self, cloud: RelCloud, fleet: list[VmInfo], *, every: float, seed: int = 11,
                 temporary: bool = True) -> None:
        self.cloud = cloud
        self.fleet = fleet
        self.every = every
        self.rng = random.Random(seed)
        self.temporary = temporary
        self.counts: Counter[str] = Counter()
        self.created: list[VmInfo] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def changes(self) -> int:
        return sum(n for what, n in self.counts.items() if not what.endswith("(no-op)"))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rel-chaos")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            await asyncio.sleep(self.every * self.rng.uniform(0.5, 1.5))
            n += 1
            await self.change(n)

    async def change(self, n: int) -> None:
        rng = self.rng
        if self.temporary and n % 7 == 0:
            node = rng.choice(self.cloud.nodes)
            vm = await create_vm(node, f"tmp{n:04d}.{node.name}.example.com",
                                 brand=rng.choice(("kvm", "joyent")), user="alice",
                                 state=rng.choice(("running", "stopped")))
            self.created.append(vm)
            self.counts["create"] += 1
            return
        if self.temporary and n % 7 == 3 and self.created:
            vm = self.created.pop(0)
            await ctl(self.cloud.node(vm.node), "destroy", vm.uuid)
            self.counts["destroy"] += 1
            return
        vm = rng.choice(self.fleet)
        what = rng.choice(("crash", "guest-poweroff", "guest-reboot"))
        try:
            await ctl(self.cloud.node(vm.node), what, vm.uuid)
        except AssertionError:
            self.counts[f"{what} (no-op)"] += 1  # the VM was not running
            return
        self.counts[what] += 1


# -- the broker ------------------------------------------------------------------------------


def have_rabbitmqctl() -> bool:
    return shutil.which("rabbitmqctl") is not None


async def rabbitmqctl(*args: str, timeout: float = 120.0) -> str:
    rc, out, err = await run(["rabbitmqctl", *args], {"PATH": _path()}, timeout=timeout)
    if rc != 0:
        raise AssertionError(f"rabbitmqctl {' '.join(args)}: {err.strip() or out.strip()}")
    return out


def _path() -> str:
    import os

    return os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")


async def close_all_connections(vhost: str) -> None:
    """Every connection to `vhost` closed by the broker (other vhosts keep theirs)."""
    await rabbitmqctl("-q", "close_all_connections", "-p", vhost, "vmd reliability test")


async def restart_broker(down: float = 1.0) -> float:
    """`stop_app`, a pause, `start_app`, and wait until it serves again; seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    await rabbitmqctl("-q", "stop_app")
    try:
        await asyncio.sleep(down)
    finally:
        # Whatever happens to the test, the broker is started again before it goes on.
        await rabbitmqctl("-q", "start_app")
        await rabbitmqctl("-q", "await_startup", "--timeout", "120")
    return loop.time() - started
