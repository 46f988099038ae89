"""How a command reaches the node: the `Runner` interface and its local implementation.

The vmadm driver only builds argument lists; a runner executes them, either on this host
(`LocalRunner`: the agent runs on the compute node, or against the simulator) or over SSH
(`vmd.node_agent.driver.ssh.SshRunner`). Both offer the same two operations:

- `run(argv, stdin=..., timeout=..., env=...)`: run to completion and collect
  rc/stdout/stderr; at the time limit the command is killed and a `RunResult` with
  `timed_out=True` is returned.
- `spawn(argv, env=...)`: a long-running command read line by line (`vmadm events`).

`env` holds variables for that one command (vmadm's `REQ_ID`): locally they are added to the
child's environment; over SSH, which does not forward the environment, they become leading
`NAME=value` assignments of the remote command line (`remote_command`).

The local runner never uses a shell: `asyncio.create_subprocess_exec` with the argv list.
Each command runs in its own session and process group (`start_new_session=True`), and on
timeout, on cancellation of the caller, or when a stream is closed, the WHOLE group gets
SIGKILL at once. There is no SIGTERM grace: vmadm keeps no state that a graceful exit would
save (its locks are released by the kernel), a grace period would only make the time limit
longer and less certain, and vmadm's own behaviour when its waiting process dies is the
documented one (docs/driver.md, vmadm fact 5: a KVM stop still completes, a bhyve/OS
forced halt does not).
stdin is /dev/null unless input is given, so a command that reads stdin cannot hang on it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import shlex
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .errors import CannotExecute

# The `ready` line of `vmadm events` carries every VM of the node on one line.
LINE_LIMIT = 64 * 1024 * 1024
STDERR_TAIL = 4096
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


@dataclass(frozen=True, slots=True)
class RunResult:
    """A finished command. `timed_out`: killed by the runner at its time limit."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False


class Stream(Protocol):
    """A long-running command whose stdout is consumed line by line."""

    async def readline(self) -> bytes:
        """The next line (with its newline); b"" once the stream has ended."""
        ...

    async def close(self) -> int | None:
        """Kill the command if it still runs and return its exit code (None if unknown)."""
        ...

    def stderr_tail(self) -> str:
        """The last few KiB the command wrote to stderr (for logging why it died)."""
        ...


class Runner(Protocol):
    """Runs argv lists on one node."""

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float,
        env: Mapping[str, str] | None = None,
    ) -> RunResult: ...

    async def spawn(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Stream:
        ...

    async def aclose(self) -> None: ...


def check_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """Per-command variables: names of `[A-Z_][A-Z0-9_]*`, values without NUL or newline."""
    checked = dict(env or {})
    for name, value in checked.items():
        if not _ENV_NAME.fullmatch(name) or "\0" in value or "\n" in value:
            raise ValueError(f"unusable environment variable {name!r}={value!r:.40}")
    return checked


def remote_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """One command line for a remote POSIX shell: `NAME=value ... argv`, every word quoted."""
    assignments = [f"{k}={shlex.quote(v)}" for k, v in check_env(env).items()]
    return " ".join([*assignments, shlex.join(argv)])


def decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


class TailBuffer:
    """Keeps the last `size` bytes written to it."""

    def __init__(self, size: int = STDERR_TAIL) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = size
        self._len = 0

    def add(self, data: bytes) -> None:
        self._chunks.append(data)
        self._len += len(data)
        while self._len - len(self._chunks[0]) >= self._size:
            self._len -= len(self._chunks.popleft())

    def text(self) -> str:
        return decode(b"".join(self._chunks)[-self._size :])


async def drain_into(read: Callable[[int], Awaitable[bytes]], tail: TailBuffer) -> None:
    """Read a stream to its end, keeping its last bytes (a stream's stderr)."""
    while chunk := await read(65536):
        tail.add(chunk)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # The child is the leader of its own group (start_new_session), so its pid is the
    # pgid; the group may outlive the leader, so kill even if the leader has exited.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class LocalRunner:
    """Runs commands as child processes of this process (no shell)."""

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        kill_wait: float = 5.0,
        line_limit: int = LINE_LIMIT,
    ) -> None:
        # `env` is added to this process's environment (e.g. VMADM_SIM_ROOT); it is read
        # at each run, so the constructor has no side effects.
        self._env = dict(env or {})
        self._kill_wait = kill_wait
        self._line_limit = line_limit

    def _environ(self, extra: Mapping[str, str] | None) -> dict[str, str] | None:
        if not self._env and not extra:
            return None
        return {**os.environ, **self._env, **check_env(extra)}

    async def _exec(
        self,
        argv: Sequence[str],
        *,
        stdin: int,
        limit: int = LINE_LIMIT,
        env: Mapping[str, str] | None = None,
    ) -> asyncio.subprocess.Process:
        if not argv:
            raise ValueError("empty argv")
        environ = self._environ(env)
        try:
            return await asyncio.create_subprocess_exec(
                *argv,
                stdin=stdin,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=environ,
                start_new_session=True,
                limit=limit,
            )
        except OSError as exc:
            raise CannotExecute(f"cannot execute {argv[0]!r}: {exc.strerror or exc}") from None

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float,
        env: Mapping[str, str] | None = None,
    ) -> RunResult:
        proc = await self._exec(
            argv, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            env=env,
        )
        talk = asyncio.ensure_future(proc.communicate(stdin or None))
        try:
            done, _ = await asyncio.wait({talk}, timeout=timeout)
            if talk in done:
                out, err = talk.result()
                assert proc.returncode is not None
                return RunResult(proc.returncode, decode(out), decode(err))
            # Time limit: kill the group, then collect what it printed before dying (the
            # pipes close when the last member of the group is gone).
            _kill_group(proc)
            try:
                out, err = await asyncio.wait_for(asyncio.shield(talk), self._kill_wait)
            except TimeoutError:
                out, err = b"", b""
            return RunResult(
                proc.returncode if proc.returncode is not None else -signal.SIGKILL,
                decode(out),
                decode(err),
                timed_out=True,
            )
        finally:
            # Also reached when the caller is cancelled: nothing may outlive the call.
            if not talk.done():
                talk.cancel()
            if proc.returncode is None:
                _kill_group(proc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), self._kill_wait)

    async def spawn(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> LocalStream:
        proc = await self._exec(argv, stdin=asyncio.subprocess.DEVNULL, limit=self._line_limit,
                                env=env)
        assert proc.stderr is not None
        tail = TailBuffer()
        drain = asyncio.ensure_future(drain_into(proc.stderr.read, tail))
        return LocalStream(proc, stderr=tail, drain=drain, kill_wait=self._kill_wait)

    async def aclose(self) -> None:
        return None


class LocalStream:
    """A spawned local command. Its stderr is drained (`drain`) so it never blocks on it."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        *,
        stderr: TailBuffer,
        drain: asyncio.Future[None],
        kill_wait: float,
    ) -> None:
        self.proc = proc
        self._stderr = stderr
        self._drain = drain
        self._kill_wait = kill_wait

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def readline(self) -> bytes:
        assert self.proc.stdout is not None
        return await self.proc.stdout.readline()

    async def close(self) -> int | None:
        if self.proc.returncode is None:
            _kill_group(self.proc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), self._kill_wait)
        # The stderr pipe closes with the group; never wait on it forever.
        await asyncio.wait({self._drain}, timeout=self._kill_wait)
        self._drain.cancel()
        return self.proc.returncode

    def stderr_tail(self) -> str:
        return self._stderr.text()
