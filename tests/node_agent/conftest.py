"""Fixtures for the driver tests: the simulator's environment, a real in-process SSH server
on 127.0.0.1 that executes the commands it receives, and process inspection via /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import pytest

from vmd.config import SshSettings
from vmd.model import NodeName
from vmd.node_agent.driver import LocalRunner, SshRunner, Vmadm

BIN = Path(sys.executable).parent
VMADM = BIN / "vmd-vmadm"
CTL = BIN / "vmd-vmadm-ctl"
ZONECFG = BIN / "vmd-zonecfg"
# What an ISO start runs on the node besides vmadm (docs/driver.md).
NODE_TOOLS = frozenset({str(VMADM), str(ZONECFG), "ls", "mkdir", "touch"})
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
TIMESCALE = "0.02"


def _sim_works() -> bool:
    try:
        done = subprocess.run([str(VMADM)], capture_output=True, text=True, timeout=30,
                              env={**os.environ, "VMADM_SIM_ROOT": "/nonexistent"})
    except OSError:
        return False
    return "not implemented yet" not in done.stderr


needs_sim = pytest.mark.skipif(not _sim_works(), reason="vmd-vmadm is not implemented yet")


# -- the simulated node ------------------------------------------------------------------


@dataclass
class Sim:
    root: Path
    env: dict[str, str]

    @property
    def iso_dir(self) -> Path:
        return self.root / "iso"

    async def ctl(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            str(CTL), *args, env={**os.environ, **self.env},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, f"vmd-vmadm-ctl {args}: {err.decode()}"
        return out.decode()

    async def create(self, brand: str = "kvm", state: str = "stopped", **extra: str) -> str:
        args = ["create", "--brand", brand, "--state", state,
                "--alias", extra.get("alias", "vm"),
                "--hostname", extra.get("hostname", "vm.example.com"),
                "--owner", extra.get("owner", "8a1a4e6c-0000-4000-8000-000000000001")]
        if "ostype" in extra:
            args += ["--ostype", extra["ostype"]]
        return (await self.ctl(*args)).split()[-1]


@pytest.fixture
def sim(tmp_path: Path) -> Sim:
    root = tmp_path / "node"
    root.mkdir()
    return Sim(root, {"VMADM_SIM_ROOT": str(root), "VMADM_SIM_TIMESCALE": TIMESCALE})


# -- /proc ---------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of a process, None when it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), int(fields[2])


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[2] == pgid and stat[0] != "Z":
                members.append(int(entry.name))
    return members


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except (FileNotFoundError, ProcessLookupError):
        return []


def children(needle: str) -> list[int]:
    """Live child processes of this test process whose command line contains `needle`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if (stat and stat[1] == os.getpid() and stat[0] != "Z"
                    and needle in " ".join(cmdline(int(entry.name)))):
                found.append(int(entry.name))
    return found


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


# -- a real SSH server that executes what it receives ---------------------------------------


@dataclass
class SshNode:
    """An asyncssh server on 127.0.0.1 running received commands for real (allow-listed).

    Like a login shell, leading `NAME=value` words of a command line set the command's
    environment (how the driver passes `REQ_ID`); `commands` keeps every line received."""

    tmp: Path
    env: dict[str, str]
    allowed: frozenset[str]
    kill_on_close: bool = True
    host_key: asyncssh.SSHKey = field(
        default_factory=lambda: asyncssh.generate_private_key("ssh-ed25519"))
    client_key: asyncssh.SSHKey = field(
        default_factory=lambda: asyncssh.generate_private_key("ssh-ed25519"))
    port: int = 0
    pids: list[int] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)
    connections: list[asyncssh.SSHServerConnection] = field(default_factory=list)
    server: asyncssh.SSHAcceptor | None = None
    active: int = 0
    max_active: int = 0
    handlers: set[asyncio.Task[None]] = field(default_factory=set)
    commands: list[str] = field(default_factory=list)

    async def start(self) -> None:
        node = self

        class Server(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                node.connections.append(conn)

        self.server = await asyncssh.listen(
            "127.0.0.1", self.port, server_factory=Server,
            server_host_keys=[self.host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(
                self.client_key.export_public_key().decode()),
            process_factory=self._handle, encoding=None)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        self.drop_connections()
        # Let every handler reap its process, so no transport outlives the test's loop.
        if self.handlers:
            await asyncio.wait(self.handlers, timeout=10)
        await asyncio.sleep(0.05)

    def drop_connections(self) -> None:
        for conn in self.connections:
            conn.abort()
        self.connections.clear()

    def settings(self, *, known_hosts_key: asyncssh.SSHKey | None = None,
                 max_sessions: int = 8) -> SshSettings:
        key_file = self.tmp / "id_ed25519"
        self.client_key.write_private_key(str(key_file))
        known = self.tmp / "known_hosts"
        host_key = known_hosts_key or self.host_key
        known.write_text(f"[127.0.0.1]:{self.port} {host_key.export_public_key().decode()}")
        return SshSettings(host="127.0.0.1", port=self.port, username="root",
                           client_keys=(key_file,), known_hosts=known, connect_timeout=5,
                           keepalive_interval=5, max_sessions=max_sessions)

    async def _handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        task.add_done_callback(self.handlers.discard)
        self.commands.append(process.command or "")
        argv = shlex.split(process.command or "")
        assigned: dict[str, str] = {}
        while argv and _ASSIGNMENT.match(argv[0]):
            name, _, value = argv.pop(0).partition("=")
            assigned[name] = value
        if not argv or argv[0] not in self.allowed:
            process.stderr.write(f"command not allowed: {process.command!r}\n".encode())
            process.exit(126)
            return
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, **self.env, **assigned},
            start_new_session=True)
        self.pids.append(proc.pid)
        self.active += 1
        self.max_active = max(self.max_active, self.active)

        def kill() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        async def stdin_and_signals() -> None:
            # Forward stdin until EOF, like sshd; a `signal` request surfaces as
            # SignalReceived on stdin reads (also after EOF), like OpenSSH's killpg.
            assert proc.stdin is not None
            eof = False
            while True:
                try:
                    data = await process.stdin.read(65536)
                except asyncssh.SignalReceived as exc:
                    self.signals.append(exc.signal)
                    kill()
                    return
                except asyncssh.Error:
                    return
                if data and not eof:
                    proc.stdin.write(data)
                    with contextlib.suppress(ConnectionError):
                        await proc.stdin.drain()
                elif not data:
                    if not eof:
                        eof = True
                        proc.stdin.close()
                    await asyncio.sleep(0.02)

        async def copy(reader: asyncio.StreamReader | None,
                       writer: asyncssh.SSHWriter[bytes]) -> None:
            assert reader is not None
            while chunk := await reader.read(65536):
                with contextlib.suppress(OSError, asyncssh.Error):
                    writer.write(chunk)

        async def on_close() -> None:
            await process.channel.wait_closed()
            if self.kill_on_close:
                kill()

        helpers = [asyncio.ensure_future(stdin_and_signals()), asyncio.ensure_future(on_close())]
        try:
            await asyncio.gather(copy(proc.stdout, process.stdout),
                                 copy(proc.stderr, process.stderr))
            rc = await proc.wait()
        finally:
            self.active -= 1
            for helper in helpers:
                helper.cancel()
            if proc.returncode is None:
                kill()
                await asyncio.shield(proc.wait())
        if not process.channel.is_closing():
            process.exit(rc if rc >= 0 else 128 - rc)


@pytest.fixture
async def ssh_node(tmp_path: Path, sim: Sim) -> AsyncIterator[SshNode]:
    node = SshNode(tmp_path, sim.env, NODE_TOOLS | {sys.executable})
    await node.start()
    yield node
    await node.stop()


# -- the driver through either runner ------------------------------------------------------


DriverFactory = Callable[..., Awaitable[Vmadm]]


@pytest.fixture(params=["local", "ssh"])
async def make_driver(request: pytest.FixtureRequest, sim: Sim,
                      tmp_path: Path) -> AsyncIterator[DriverFactory]:
    """A factory of `Vmadm` drivers on the simulated node, through the local or SSH runner."""
    drivers: list[Vmadm] = []
    nodes: list[SshNode] = []

    async def make(**kwargs: object) -> Vmadm:
        if request.param == "local":
            runner: LocalRunner | SshRunner = LocalRunner(env=sim.env)
        else:
            node = SshNode(tmp_path, sim.env, NODE_TOOLS)
            await node.start()
            nodes.append(node)
            runner = SshRunner(node.settings())
        kwargs.setdefault("zonecfg", [str(ZONECFG)])
        driver = Vmadm(runner, node=NodeName("cn1"), vmadm=[str(VMADM)],
                       iso_dir=str(sim.iso_dir), **kwargs)  # type: ignore[arg-type]
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        await driver.runner.aclose()
    for node in nodes:
        await node.stop()
