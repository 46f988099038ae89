"""Leadership among the daemons that share one PostgreSQL store: one active, the rest standby.

Why a module of its own: the daemon's start, its writes, its publishes and its acks each
need one question answered ("am I still the leader?") and the answer has two halves that
must not drift apart: the lease row in PostgreSQL (vmd.store.lease: holder, epoch, expiry
in database time) and a LOCAL MONOTONIC deadline that this process keeps itself.

- `acquire(stop)`: the standby's wait. It polls the lease row every `POLL` seconds on its
  own connection and holds nothing else: no broker connection, no consumer, no fleet in
  memory (the metrics server is already up, so the standby still serves `/metrics`).
  It returns once the row is ours with a new epoch; the daemon then restores from the
  store, replays the outbox and consumes, in that order (vmd.daemon.runner).
- `run()`: the leader's renewal loop, on the same dedicated connection (never the
  store's: a long write turn must not delay a renewal). Each success moves the local
  deadline to `sent + lease - MARGIN`, where `sent` is the monotonic time the renewal was
  sent: the row's expiry is the database's `now()` at the renewal plus `lease`, later than
  `sent + lease`, so the local deadline always ends at least `MARGIN` before any standby
  may take the row. Errors (the database away) are retried until that deadline.
- `check()`: run before every write, publish and ack (the store's fence and the bus's
  fence). Past the local deadline it steps down. `fence(cursor)` adds the database's
  word inside the write transaction (`SELECT ... FOR SHARE` on the row, vmd.store.lease),
  which holds even when the local clock cannot be trusted.

Stepping down is `os._exit(ExitCode.FENCED)`, at once, from whichever thread saw it. A
process that lost its lease may not write, publish or ack anything, and a drain is made of
exactly those; exiting lets the kernel close both connections, the broker requeue every
unacked delivery at once (for the new leader) and PostgreSQL roll back any open
transaction. systemd restarts the unit (`Restart=on-failure`), and the new process is a
standby. docs/ha.md argues this against stepping down in-process.

The monotonic clock (CLOCK_MONOTONIC) keeps counting while the process is stopped
(SIGSTOP, a VM paused by its hypervisor), so a resumed leader sees its deadline passed at
its first check. It does not count while the whole host is suspended; the fence's
database check covers that case.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import NoReturn

from vmd.bus import BusSettings
from vmd.obs import systemd
from vmd.obs.logging import get_logger
from vmd.obs.metrics import DaemonMetrics
from vmd.obs.systemd import ExitCode
from vmd.store import Fenced, lease
from vmd.store.lease import FenceConn, Lease

log = get_logger(__name__)

# `[daemon] lease` default: a dead leader's row is free for at most this long after its
# last renewal. docs/ha.md "Figures" derives it with the AMQP heartbeat.
LEASE = 10.0
# The local deadline ends this long before the row's expiry (a publish already handed to
# the socket reaches the broker before a standby can have taken the row).
MARGIN_FRACTION = 0.1
# Renewals per lease: four tries before the local deadline, so a database that answers
# within a couple of seconds again keeps the leader in place.
RENEWALS = 5
# How often a standby looks at the row.
POLL = 1.0
# A write transaction of the leader idle this long (a fraction of the lease) is ended by
# the server (vmd.store.lease.FENCE_SQL): a leader frozen inside one cannot hold up the
# takeover longer than this. A live daemon sends a turn's statements back to back.
IDLE_FRACTION = 0.25

Exit = Callable[[int], NoReturn]


def bus_link(link: BusSettings, leadership: Leadership | None
             ) -> tuple[BusSettings, Callable[[], None] | None]:
    """The active daemon's broker link and the bus's fence (None: SQLite, no leadership).

    The fence, `Leadership.check`, runs before every publish and ack. The heartbeat is
    half the lease (5 s by default), not the default 30 s.

    A frozen leader (SIGSTOP, a paused VM) keeps its broker connection, and with it every
    delivery it had prefetched, until the broker gives up on its heartbeats: two to three
    heartbeat timeouts (measured: 25 s at a 10 s heartbeat, docs/ha.md "Figures"). At half
    the lease the requests it held go back to the queue, to the new leader, 10-15 s after
    the freeze, about when the new leader starts consuming, instead of 60-90 s later."""
    if leadership is None:
        return link, None
    return (dataclasses.replace(link, heartbeat=max(2, round(leadership.lease / 2))),
            leadership.check)


def holder_id() -> str:
    """This process's id in the lease row: host, pid and a random part (a restarted
    process with a reused pid is another holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class Leadership:
    """One daemon's side of the lease. Build it before the store opens (the store gets
    `fence`), `await acquire(stop)` before loading the fleet, then run `run()` as a task."""

    def __init__(self, conninfo: str, *, metrics: DaemonMetrics, lease_seconds: float = LEASE,
                 holder: str | None = None, clock: Callable[[], float] = time.monotonic,
                 exit: Exit = os._exit, notify: systemd.Notifier | None = None) -> None:
        self._conninfo = conninfo
        self._notify = notify or systemd.Notifier()  # the daemon's (vmd.obs.tasks)
        self._metrics = metrics
        self.lease = lease_seconds
        self.margin = lease_seconds * MARGIN_FRACTION
        self.holder = holder or holder_id()
        self._clock = clock
        self._exit = exit
        self._conn: lease.Connection | None = None
        self.held: Lease | None = None
        self.deadline = float("-inf")  # local, monotonic
        # Read at scrape time: a leader past its local deadline shows 0 even before it
        # stepped down (a resumed SIGSTOPped one), so two daemons never both show 1.
        metrics.leader.set_function(self.leading)

    @property
    def renew_every(self) -> float:
        return self.lease / RENEWALS

    # -- standby ----------------------------------------------------------------------------

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait as a standby until the lease is ours (True) or `stop` is set (False)."""
        self._notify.ready("standby: waiting for the lease")
        shown: tuple[str, int] | None = None
        while not stop.is_set():
            sent = self._clock()
            try:
                conn = await self._connection(self.lease)
                async with asyncio.timeout(self.lease):
                    held = await lease.acquire(conn, self.holder, self.lease)
                    current = None if held else await lease.holding(conn)
            except lease.ERRORS as exc:
                await self._drop(f"standby: cannot reach the store: {_reason(exc)}")
                held, current = None, None
            if held is not None:
                self._won(held, sent)
                return True
            if current is not None and shown != (current.holder, current.epoch):
                shown = (current.holder, current.epoch)
                self._notify.status(f"standby: epoch {current.epoch} held by {current.holder}")
                log.info("standby", leader=current.holder, epoch=current.epoch)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL)
        return False

    def _won(self, held: Lease, sent: float) -> None:
        self.held = held
        self.deadline = sent + self.lease - self.margin
        self._metrics.leader_epoch.set(held.epoch)
        if held.epoch > 1:
            self._metrics.takeovers.inc()
        self._notify.status(f"active: epoch {held.epoch}, restoring from the store")
        log.info("leadership acquired", epoch=held.epoch, holder=self.holder,
                 lease=self.lease)

    # -- leader -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Renew the lease until cancelled; step down when the local deadline passes."""
        assert self.held is not None
        held = self.held
        while True:
            await asyncio.sleep(max(0.0, min(self.renew_every, self.deadline - self._clock())))
            self.check()
            sent = self._clock()
            try:
                conn = await self._connection(self.deadline - sent)
                async with asyncio.timeout(max(0.0, self.deadline - self._clock())):
                    ours = await lease.renew(conn, held, self.lease)
            except lease.ERRORS as exc:
                await self._drop(f"lease renewal failed: {_reason(exc)}")
                continue  # retried until the deadline; `check` above steps down past it
            if not ours:
                self.step_down("the lease was taken or expired in the store")
            self.deadline = sent + self.lease - self.margin

    def active(self, status: str) -> str:
        """The `STATUS=` line of the active daemon (a standby's says `standby: ...`)."""
        epoch = self.held.epoch if self.held is not None else 0
        return f"active (epoch {epoch}): {status}"

    def leading(self) -> float:
        """1.0 while the lease is ours and its local deadline ahead (`vmd_leader`)."""
        return 1.0 if self.held is not None and self._clock() < self.deadline else 0.0

    def check(self) -> None:
        """Before a write, a publish or an ack: step down once the local deadline passed."""
        if self._clock() >= self.deadline:
            self.step_down("the lease's local deadline passed")

    def fence(self, conn: FenceConn) -> None:
        """The store's fence, first in every write transaction (in the writer thread):
        the local deadline, then the lease row, share-locked until the transaction ends."""
        self.check()
        assert self.held is not None
        try:
            lease.check(conn, self.held, self.lease * IDLE_FRACTION)
        except Fenced as exc:
            self.step_down(str(exc))

    def step_down(self, why: str) -> NoReturn:
        """Exit now (see the module docstring); systemd restarts us as a standby."""
        epoch = self.held.epoch if self.held is not None else 0
        log.critical("stepping down: exiting for a restart as a standby", reason=why,
                     epoch=epoch, exit_code=int(ExitCode.FENCED))
        self._notify.status(f"standby: stepped down from epoch {epoch} ({why})")
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        self._exit(ExitCode.FENCED)

    async def release(self) -> None:
        """A clean stop (after the drain): free the lease for a standby now."""
        held, self.held = self.held, None
        if held is not None and self._conn is not None:
            with contextlib.suppress(*lease.ERRORS):
                async with asyncio.timeout(self.margin):
                    await lease.release(self._conn, held)
        await self._drop(None)

    # -- the dedicated connection -----------------------------------------------------------

    async def _connection(self, within: float) -> lease.Connection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        async with asyncio.timeout(max(0.0, within)):
            conn = await lease.connect(self._conninfo)
        self._conn = conn
        return conn

    async def _drop(self, why: str | None) -> None:
        conn, self._conn = self._conn, None
        if why is not None:
            log.warning(why)
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


def _reason(exc: BaseException) -> str:
    """One line for the log (a timeout has no message of its own)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else f"{type(exc).__name__} (no answer in time)"
