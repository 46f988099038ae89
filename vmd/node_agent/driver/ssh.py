"""The SSH runner: vmadm on a compute node reached over one long-lived asyncssh connection.

Security rules (never relaxed, not even for tests):

- Host keys are always verified against the configured `known_hosts` file (re-read at each
  connect, so a rotated file is picked up). An unknown or changed host key raises
  `HostKeyRejected`, a hard error that is never retried into acceptance; `known_hosts=None`
  is never passed. The user's `~/.ssh/config` and ssh-agent are not consulted: only the
  configured client keys authenticate.
- The remote command is one string parsed by the node's login shell, so it is built with
  `shlex.join(argv)` from values that were already validated (`validate`); per-command
  variables (`REQ_ID`) are leading `NAME=value` assignments, the value quoted the same way
  (SSH does not forward the environment).
- No pseudo-terminal (`term_type=None`, `request_pty=False`): vmadm refuses JSON on a tty
  stdin. stdin is /dev/null unless input is given (a command reading stdin would otherwise
  hang until the time limit).

Connection handling: one connection per node, opened lazily by the first command and kept;
keepalives (`keepalive_interval` x `keepalive_count_max`) detect a dead node. After a loss
the next command reconnects; if a connect fails, the following attempts wait an exponential
back-off (fast failure with `NodeUnreachable` meanwhile). If opening the channel fails on a
connection that turned out to be dead, the command did not start, so it is retried once on
a fresh connection. If the connection dies while the command runs, its outcome is unknown:
`NodeUnreachable` is raised, never a retry. Concurrent channels are bounded by a semaphore
below sshd's `MaxSessions` (OpenSSH default 10); a spawned stream holds one slot.

Time limit: the remote command gets the SSH `signal` request `KILL` (OpenSSH delivers it as
`killpg` on the command's process group) and then its channel is closed. A server that
refuses signal requests leaves the command running until it writes to its closed pipes;
see docs/driver.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

import asyncssh

from vmd.config import SshSettings
from vmd.obs.logging import get_logger

from .errors import HostKeyRejected, NodeUnreachable, SshConfigError
from .runner import RunResult, TailBuffer, decode, drain_into, remote_command

log = get_logger(__name__)

_CHANNEL_ERRORS = (asyncssh.Error, OSError)


class SshRunner:
    """Runs argv lists on one node over SSH (see the module docstring)."""

    def __init__(
        self,
        settings: SshSettings,
        *,
        keepalive_count_max: int = 3,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        kill_wait: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not settings.client_keys:
            raise SshConfigError(f"ssh {settings.host}: no client_keys configured")
        if settings.max_sessions < 1:
            raise SshConfigError(f"ssh {settings.host}: max_sessions must be >= 1")
        self.settings = settings
        self._keepalive_count_max = keepalive_count_max
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._kill_wait = kill_wait
        self._clock = clock
        self._conn: asyncssh.SSHClientConnection | None = None
        self._connect_lock = asyncio.Lock()
        self._sessions = asyncio.Semaphore(settings.max_sessions)
        self._delay = backoff_initial
        self._next_attempt = 0.0
        self._last_error = ""
        # Metrics: successful connects, of which reconnects, and failed attempts.
        self.connects = 0
        self.reconnects = 0
        self.connect_failures = 0

    @property
    def target(self) -> str:
        return f"{self.settings.username}@{self.settings.host}:{self.settings.port}"

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    def _check_files(self) -> None:
        s = self.settings
        if not s.known_hosts.is_file():
            raise SshConfigError(f"ssh {s.host}: known_hosts file {s.known_hosts} not found")
        for key in s.client_keys:
            if not key.is_file():
                raise SshConfigError(f"ssh {s.host}: client key {key} not found")

    async def _connection(self) -> asyncssh.SSHClientConnection:
        async with self._connect_lock:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn
            if self._conn is not None:
                log.warning("ssh: connection lost, reconnecting", target=self.target)
                self._conn = None
            now = self._clock()
            if now < self._next_attempt:
                raise NodeUnreachable(
                    f"ssh {self.target}: unreachable ({self._last_error}); "
                    f"next attempt in {self._next_attempt - now:.1f} s"
                )
            self._check_files()
            s = self.settings
            try:
                conn = await asyncssh.connect(
                    s.host,
                    s.port,
                    username=s.username,
                    known_hosts=str(s.known_hosts),
                    client_keys=[str(k) for k in s.client_keys],
                    agent_path=None,
                    config=None,
                    connect_timeout=s.connect_timeout,
                    keepalive_interval=s.keepalive_interval,
                    keepalive_count_max=self._keepalive_count_max,
                )
            except asyncssh.HostKeyNotVerifiable as exc:
                raise HostKeyRejected(
                    f"ssh {self.target}: host key not accepted ({exc.reason}); "
                    f"check {s.known_hosts}"
                ) from None
            except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
                raise SshConfigError(f"ssh {s.host}: cannot load client key: {exc}") from None
            except (*_CHANNEL_ERRORS, TimeoutError) as exc:
                self.connect_failures += 1
                self._last_error = _reason(exc)
                self._next_attempt = now + self._delay
                self._delay = min(self._delay * 2, self._backoff_max)
                raise NodeUnreachable(f"ssh {self.target}: {self._last_error}") from None
            if self.connects:
                self.reconnects += 1
            self.connects += 1
            self._delay = self._backoff_initial
            self._next_attempt = 0.0
            self._conn = conn
            return conn

    async def _drop(self, conn: asyncssh.SSHClientConnection) -> None:
        async with self._connect_lock:
            if self._conn is conn:
                self._conn = None
        conn.close()

    async def _open(
        self, command: str, *, with_stdin: bool
    ) -> asyncssh.SSHClientProcess[bytes]:
        for attempt in (1, 2):
            conn = await self._connection()
            try:
                return await conn.create_process(
                    command,
                    stdin=asyncssh.PIPE if with_stdin else asyncssh.DEVNULL,
                    encoding=None,
                    term_type=None,
                    request_pty=False,
                )
            except _CHANNEL_ERRORS as exc:
                # The command did not start: a dead connection is replaced and the open
                # retried once; a second failure is reported.
                await self._drop(conn)
                if attempt == 2:
                    raise NodeUnreachable(
                        f"ssh {self.target}: cannot open a channel: {_reason(exc)}"
                    ) from None
        raise AssertionError("unreachable")

    async def _kill(self, proc: asyncssh.SSHClientProcess[bytes]) -> None:
        with contextlib.suppress(*_CHANNEL_ERRORS):
            proc.send_signal("KILL")
        proc.close()
        with contextlib.suppress(TimeoutError, *_CHANNEL_ERRORS):
            await asyncio.wait_for(proc.wait_closed(), self._kill_wait)

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float,
        env: Mapping[str, str] | None = None,
    ) -> RunResult:
        command = remote_command(argv, env)
        async with self._sessions:
            proc = await self._open(command, with_stdin=bool(stdin))
            talk = asyncio.ensure_future(proc.communicate(stdin or None))
            try:
                done, _ = await asyncio.wait({talk}, timeout=timeout)
                if talk not in done:
                    await self._kill(proc)
                    out, err = proc.collect_output()
                    return RunResult(-9, decode(out), decode(err), timed_out=True)
                out, err = talk.result()
            except _CHANNEL_ERRORS as exc:
                raise NodeUnreachable(
                    f"ssh {self.target}: lost while running {argv[:2]}: {_reason(exc)}; "
                    "outcome unknown"
                ) from None
            finally:
                if not talk.done():
                    talk.cancel()
                    # Cancelled caller: the remote command must not outlive the call.
                    await self._kill(proc)
            returncode = proc.returncode
            if returncode is None:
                raise NodeUnreachable(
                    f"ssh {self.target}: connection lost while running {argv[:2]}; "
                    "outcome unknown"
                )
            return RunResult(returncode, decode(out), decode(err))

    async def spawn(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> SshStream:
        command = remote_command(argv, env)
        await self._sessions.acquire()
        try:
            proc = await self._open(command, with_stdin=False)
        except BaseException:
            self._sessions.release()
            raise
        tail = TailBuffer()
        drain = asyncio.ensure_future(_drain_quietly(proc, tail))
        return SshStream(
            proc, stderr=tail, drain=drain, release=self._sessions.release, kill=self._kill
        )

    async def aclose(self) -> None:
        async with self._connect_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(*_CHANNEL_ERRORS):
                await conn.wait_closed()


class SshStream:
    """A remote long-running command; holds one session slot until closed."""

    def __init__(
        self,
        proc: asyncssh.SSHClientProcess[bytes],
        *,
        stderr: TailBuffer,
        drain: asyncio.Future[None],
        release: Callable[[], None],
        kill: Callable[[asyncssh.SSHClientProcess[bytes]], Awaitable[None]],
    ) -> None:
        self.proc = proc
        self._stderr = stderr
        self._drain = drain
        self._release: Callable[[], None] | None = release
        self._kill = kill

    async def readline(self) -> bytes:
        try:
            return await self.proc.stdout.readline()
        except _CHANNEL_ERRORS:
            # The channel or the connection died: for the reader that is the end.
            return b""

    async def close(self) -> int | None:
        try:
            # (`is_closing()` is already true once our side sent EOF on stdin.)
            if self.proc.returncode is None:
                await self._kill(self.proc)
            await asyncio.wait({self._drain}, timeout=1.0)
            self._drain.cancel()
            return self.proc.returncode
        finally:
            if self._release is not None:
                self._release()
                self._release = None

    def stderr_tail(self) -> str:
        return self._stderr.text()


async def _drain_quietly(proc: asyncssh.SSHClientProcess[bytes], tail: TailBuffer) -> None:
    with contextlib.suppress(*_CHANNEL_ERRORS):
        await drain_into(proc.stderr.read, tail)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.DisconnectError):
        return exc.reason or type(exc).__name__
    if isinstance(exc, asyncssh.ChannelOpenError):
        return f"channel open failed: {exc.reason}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
