"""The cloud the fault scenarios run on: tests/support/cloud.py with short loops, async node access.

`RelCloud` is the e2e `Cloud` (a real `vmd daemon`, a real `vmd agent` per simulated node,
the `vmd-vmadm` simulator) with the loop periods a fault suite needs to finish in seconds:
task deadlines of a few seconds (so "no VM stuck past its deadline" is checked within the
run), a reconcile every few seconds, and info logs (debug logs of every request cost CPU
the 2-core machine needs for the load). Everything the scenarios do to a node goes through
asyncio subprocesses, never a blocking `subprocess.run`: the TCP proxy that cuts broker
connections lives on the same event loop and must keep pumping.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path

from support.cloud import ALICE_OWNER, BIN, BOB_OWNER, Cloud, SimNode

OWNERS = {"alice": ALICE_OWNER, "bob": BOB_OWNER}
BRANDS = ("kvm", "joyent", "bhyve", "lx", "kvm", "joyent-minimal")
# docs/fsm.md §2: node state -> vmd status; in-between states are not mapped (ignored).
NODE_STATES = {"running": "running", "stopped": "stopped", "installed": "stopped",
               "down": "stopped", "stopping": "stopping", "failed": "error"}


@dataclass(frozen=True)
class Timing:
    """The loop periods of a test cloud (seconds, real time)."""

    heartbeat: float = 0.5
    reconcile: float = 3.0  # daemon reconcile_interval and agent poll_interval
    start_deadline: float = 8.0
    stop_grace: float = 6.0
    stop_timeout: int = 2  # the `timeout` the load gives stops and reboots

    @property
    def longest_deadline(self) -> float:
        return max(self.start_deadline, self.stop_timeout + self.stop_grace)

    def deadline(self, action: str, brand: str) -> float:
        """A task's deadline (docs/fsm.md §3.6) for the load's requests: a stop or reboot
        gets its `timeout` (the load's `stop_timeout`) plus `stop_grace`, but `timeout` is
        an HVM parameter: a zone's stop keeps the default 180 s."""
        if action == "start":
            return self.start_deadline
        timeout = self.stop_timeout if brand in ("kvm", "bhyve") else 180
        return timeout + self.stop_grace

    @property
    def reconcile_bound(self) -> float:
        """docs/reliability.md: vmd equals every node within one reconcile period, one full
        sync's round trip and a heartbeat timeout (a node that was unreachable)."""
        return self.reconcile + 3 * self.heartbeat + 3.0


@dataclass(frozen=True)
class VmInfo:
    uuid: str
    hostname: str
    user: str  # the owner's AMQP user
    node: str
    brand: str


@dataclass
class RelCloud(Cloud):
    """A `Cloud` whose configuration files carry `timing`."""

    timing: Timing = field(default_factory=Timing)
    log_level: str = "info"

    def daemon_config(self) -> Path:
        t = self.timing
        self.daemon_extra = f"start_deadline = {t.start_deadline}\nstop_grace = {t.stop_grace}\n"
        path = super().daemon_config()
        text = _set(path.read_text(), "reconcile_interval", str(t.reconcile))
        text = _set(text, "heartbeat_interval", str(t.heartbeat))
        path.write_text(_set(text, "level", f'"{self.log_level}"'))
        return path

    def agent_config(self, node: SimNode) -> Path:
        path = super().agent_config(node)
        text = _set(path.read_text(), "poll_interval", str(self.timing.reconcile))
        text = _set(text, "heartbeat_interval", str(self.timing.heartbeat))
        path.write_text(_set(text, "level", f'"{self.log_level}"'))
        return path

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    async def kill_async(self, name: str) -> None:
        """SIGKILL and reap without blocking the event loop."""
        proc = self.procs[name]
        proc.kill()
        while proc.poll() is None:
            await asyncio.sleep(0.02)


def _set(text: str, key: str, value: str) -> str:
    new, n = re.subn(rf"(?m)^{re.escape(key)} = .*$", f"{key} = {value}", text)
    assert n == 1, f"{key} not in the configuration"
    return new


async def run(argv: list[str], env: dict[str, str], stdin: bytes | None = None,
              timeout: float = 60.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdin=asyncio.subprocess.PIPE if stdin is not None else
        asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def ctl(node: SimNode, *args: str) -> str:
    """`vmd-vmadm-ctl` on the node (an operator, or the world around the node)."""
    rc, out, err = await run([str(BIN / "vmd-vmadm-ctl"), *args], node.env())
    if rc != 0:
        raise AssertionError(f"vmd-vmadm-ctl {' '.join(args)}: {err.strip()}")
    return out.strip()


async def node_states(node: SimNode) -> dict[str, str]:
    """`vmadm list -p -H -o uuid,state`: uuid -> the node's state string."""
    rc, out, err = await run([str(BIN / "vmd-vmadm"), "list", "-p", "-H", "-o", "uuid,state"],
                             node.env())
    assert rc == 0, err
    states = {}
    for line in out.splitlines():
        if line.strip():
            uuid, _, state = line.partition(":")
            states[uuid] = state
    return states


async def node_calls(node: SimNode) -> list[str]:
    out = await ctl(node, "calls")
    return [line for line in out.splitlines() if line.strip()]


async def create_vm(node: SimNode, hostname: str, *, brand: str, user: str,
                    state: str) -> VmInfo:
    out = await ctl(node, "create", "--brand", brand, "--alias", hostname.split(".")[0],
                    "--hostname", hostname, "--owner", OWNERS[user], "--state", state)
    return VmInfo(out.split()[-1], hostname, user, node.name, brand)


async def build_fleet(cloud: RelCloud, nodes: int, per_node: int) -> list[VmInfo]:
    """`nodes` simulated nodes with `per_node` VMs each: brands mixed, owners alternating
    alice/bob, every other VM running. The cloud is not started."""
    fleet = []
    for n in range(1, nodes + 1):
        node = cloud.add_node(f"node{n}")
        for i in range(per_node):
            user = "alice" if i % 2 == 0 else "bob"
            fleet.append(await create_vm(
                node, f"n{n}vm{i:02d}.example.com", brand=BRANDS[i % len(BRANDS)], user=user,
                state="running" if i % 2 else "stopped"))
    return fleet


def rss_kib(pid: int) -> int:
    """Resident memory of a process (KiB) from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")
