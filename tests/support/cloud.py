"""A whole vmd cloud for end-to-end tests: simulated nodes, a daemon and agents as real processes.

Each node is a `vmd-vmadm` simulator root (`VMADM_SIM_ROOT`) driven by a real `vmd agent`
subprocess; the daemon is a real `vmd daemon` subprocess with its own SQLite store. Tests
talk to it only through the public protocol (vmd.client / plain aio-pika), as the hidden
acceptance suite does, and poke the nodes with `vmd-vmadm-ctl` like an operator would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from support.amqp import agent_user, auth_agents_toml
from support.postgres import daemon_store
from vmd.client import Client

ALICE_OWNER = "8a1a4e6c-0000-4000-8000-000000000001"
BOB_OWNER = "8a1a4e6c-0000-4000-8000-000000000002"
TIMESCALE = "0.02"
# The venv's console scripts (vmd, vmd-vmadm, ...) even when pytest runs without the venv on
# PATH; the processes started here get it on theirs too (the agent runs `vmd-vmadm`).
BIN = Path(sys.executable).parent
PATH = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"


def base_env() -> dict[str, str]:
    return {**os.environ, "PATH": PATH}


def url_as(url: str, user: str) -> str:
    """`url` with its credentials replaced by the test user `user` (password = name)."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{user}@{rest.split('@', 1)[1]}"


@dataclass
class SimNode:
    """One simulated compute node: its simulator root and the agent serving it."""

    name: str
    root: Path
    timescale: str = TIMESCALE

    def env(self) -> dict[str, str]:
        return {**base_env(), "VMADM_SIM_ROOT": str(self.root),
                "VMADM_SIM_TIMESCALE": self.timescale}

    def ctl(self, *args: str) -> str:
        done = subprocess.run([str(BIN / "vmd-vmadm-ctl"), *args], env=self.env(),
                              capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise AssertionError(f"vmd-vmadm-ctl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout.strip()

    def vmadm(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "vmd-vmadm"), *args], env=self.env(), capture_output=True,
                              text=True, timeout=60, check=check)

    def create(self, hostname: str, *, brand: str = "kvm", owner: str = ALICE_OWNER,
               state: str = "stopped", ostype: str | None = None) -> str:
        args = ["create", "--brand", brand, "--alias", hostname.split(".")[0], "--hostname",
                hostname, "--owner", owner, "--state", state]
        if ostype:
            args += ["--ostype", ostype]
        return self.ctl(*args).split()[-1]

    def calls(self, uuid: str | None = None) -> list[str]:
        out = self.ctl("calls", *([uuid] if uuid else []))
        return [line for line in out.splitlines() if line.strip()]


@dataclass
class Cloud:
    """Configuration and processes of one test cloud."""

    base: Path
    broker_url: str  # the service's own user; each agent connects as its node's user
    nodes: list[SimNode] = field(default_factory=list)
    daemon_extra: str = ""
    agent_extra: str = ""
    admins: Sequence[str] = ("admin",)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def add_node(self, name: str) -> SimNode:
        node = SimNode(name, self.base / name / "sim")
        node.root.mkdir(parents=True, exist_ok=True)
        self.nodes.append(node)
        return node

    def node(self, name: str) -> SimNode:
        return next(n for n in self.nodes if n.name == name)

    # `[daemon] store` when not the SQLite file `store` (nor VMD_TEST_STORE's database):
    # a PostgreSQL URL (tests/e2e/test_postgres_store.py).
    store_url: str | None = None

    @property
    def store(self) -> Path:
        return self.base / "vmd.sqlite3"

    def daemon_config(self) -> Path:
        path = self.base / "daemon.toml"
        admins = ", ".join(f'"{a}"' for a in self.admins)
        path.write_text(f"""\
[broker]
url = "{self.broker_url}"

[daemon]
store = "{self.store_url or daemon_store(self.store)}"
shard = 0
no_shutdown = ["internal.example.com"]
heartbeat_interval = 0.5
reconcile_interval = 5
metrics = "127.0.0.1:0"
drain_timeout = 5
{self.daemon_extra}

[auth]
admins = [{admins}]
[auth.owners]
alice = ["{ALICE_OWNER}"]
bob = ["{BOB_OWNER}"]
{auth_agents_toml()}
[log]
level = "debug"
format = "json"
""")
        return path

    def agent_config(self, node: SimNode) -> Path:
        path = self.base / f"agent-{node.name}.toml"
        path.write_text(f"""\
[broker]
url = "{url_as(self.broker_url, agent_user(node.name))}"

[agent]
node = "{node.name}"
vmadm = ["vmd-vmadm"]
transport = "local"
heartbeat_interval = 0.5
poll_interval = 5
metrics = "127.0.0.1:0"
iso_dir = "{node.root / 'iso'}"
zonecfg = ["vmd-zonecfg"]
state_dir = "{self.base / node.name / 'agent-state'}"
drain_timeout = 10
{self.agent_extra}

[log]
level = "debug"
format = "json"
""")
        return path

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        # The child keeps its own copy of the log's descriptor; ours is closed at once.
        with (self.base / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

    def start_daemon(self) -> None:
        self._spawn("daemon", [str(BIN / "vmd"), "daemon", "-c", str(self.daemon_config())],
                    base_env())

    def start_agent(self, node: SimNode) -> None:
        argv = [str(BIN / "vmd"), "agent", "-c", str(self.agent_config(node))]
        self._spawn(f"agent-{node.name}", argv, node.env())

    def start(self) -> None:
        self.start_daemon()
        for node in self.nodes:
            self.start_agent(node)

    def signal(self, name: str, sig: int) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(sig)

    def wait(self, name: str, timeout: float = 30) -> int:
        return self.procs[name].wait(timeout=timeout)

    def kill(self, name: str) -> None:
        self.signal(name, signal.SIGKILL)
        self.wait(name)

    def log(self, name: str) -> str:
        path = self.base / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for name in list(self.procs):
            self.signal(name, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def assert_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = self.log(name)[-3000:]
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{tail}")


async def wait_for(predicate: Callable[[], object], timeout: float = 15.0,
                   interval: float = 0.1) -> None:
    """Poll an async or sync predicate until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def vm_statuses(client: Client) -> dict[str, str]:
    reply = await client.status_list()
    assert reply.code == 200, reply
    return {vm["hostname"]: vm["status"] for vm in reply.body["result"]}


async def boot(cloud: Cloud, admin: Client, *, nodes: int = 1) -> dict[str, str]:
    """Two nodes' worth of VMs; start everything; wait until the daemon lists them all."""
    n1 = cloud.add_node("node1")
    uuids = {
        "web01.example.com": n1.create("web01.example.com", state="stopped"),
        "db01.example.com": n1.create("db01.example.com", brand="joyent", state="running"),
        "app01.example.com": n1.create("app01.example.com", owner=BOB_OWNER, state="running"),
        "internal.example.com": n1.create("internal.example.com", state="running"),
    }
    if nodes > 1:
        n2 = cloud.add_node("node2")
        uuids["far01.example.com"] = n2.create("far01.example.com", state="running")
    cloud.start()

    async def listed() -> bool:
        cloud.assert_alive()
        try:
            return set(await vm_statuses(admin)) == set(uuids)
        except Exception:
            return False

    await wait_for(listed, timeout=30, interval=0.3)
    return uuids
