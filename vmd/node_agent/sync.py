"""The node's whole truth for the daemon: full syncs, the watch, heartbeats and ISO lists.

A full sync (`FullSync`: every VM of `listing()` and the ISO images) is sent when the agent
starts, after every broker reconnect, on every `sync_request`, and every `poll_interval`
seconds as the periodic reconcile (events can be lost). Every VM in it carries the time the
listing was asked for as its change time: the listing is true at some moment after it, so
the daemon orders it correctly against node events (docs/fsm.md §5).

Each full sync (re)starts the node watch with the listing as its baseline
(`backend.watch(baseline=...)`): the watcher's first snapshot is diffed against exactly what
the daemon was just told, so no change between the two is lost, and a watcher whose view
drifted (a lost event) is replaced by one that starts from the truth. Every observation goes
to the `Reporter`, which batches those of one loop turn into one `ObservationReport` (those
of a VM whose task runs wait and travel in the task's result: vmd.node_agent.reporter).

Heartbeats (`heartbeat_loop`) say that the node is served. Each one first lists the node's
ISO directory, which doubles as a probe of the node: when the command cannot run (SSH down)
no heartbeat is sent, so the daemon sees the node `unreachable` after 3 intervals, which is
the truth. A changed ISO list is sent (`IsoList`) before the heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from vmd.bus import FullSync, Heartbeat, IsoList
from vmd.model import JsonObject, NodeName, Observation, VmUuid
from vmd.obs.logging import get_logger

from .driver.backend import Backend, Watcher
from .driver.errors import HostKeyRejected, RunnerError, SshConfigError, VmadmError
from .driver.events import state_of
from .driver.watch import WatchSettings
from .reporter import Reporter

log = get_logger(__name__)


class Syncer:
    """Full syncs on request and every `poll_interval`, and the node watch they restart."""

    def __init__(
        self,
        *,
        node: NodeName,
        backend: Backend,
        reporter: Reporter,
        poll_interval: float,
        on_fatal: Callable[[BaseException], None],
        watch_settings: WatchSettings | None = None,
        clock: Callable[[], float] = time.time,
        retry_delay: float = 1.0,
    ) -> None:
        self.node = node
        self.backend = backend
        self.reporter = reporter
        self.poll_interval = poll_interval
        self.on_fatal = on_fatal
        # The full sync is the periodic scan: the watcher need not scan on its own.
        self.watch_settings = watch_settings or WatchSettings(scan_interval=None)
        self.clock = clock
        self.retry_delay = retry_delay
        # What the node had at the last listing, kept current by observations (brands).
        self.inventory: dict[VmUuid, JsonObject] = {}
        self.isos: frozenset[str] | None = None  # last ISO list sent
        self.synced = asyncio.Event()  # set once the first full sync is confirmed
        self.syncs = 0
        self.failures = 0
        self._wanted = asyncio.Event()
        self._reasons: list[str] = []
        self._watcher: Watcher | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._restarts_before = 0  # events-stream restarts of replaced watchers

    # -- requests --------------------------------------------------------------------------

    def request(self, reason: str) -> None:
        self._reasons.append(reason)
        self._wanted.set()

    @property
    def stream_restarts(self) -> int:
        current = self._watcher.stats.stream_restarts if self._watcher is not None else 0
        return self._restarts_before + current

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Sync when asked and every `poll_interval`, until cancelled (the watch stays)."""
        delay = self.retry_delay
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wanted.wait()
            self._wanted.clear()
            reasons, self._reasons = self._reasons or ["periodic"], []
            if await self.sync(", ".join(dict.fromkeys(reasons))):
                delay = self.retry_delay
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, max(self.retry_delay, min(30.0, self.poll_interval)))
            self.request("retry")

    async def sync(self, reason: str) -> bool:
        """One full sync; False when the node could not be listed (logged)."""
        asked = self.clock()
        try:
            listing = await self.backend.listing()
            isos = await self._read_isos()
        except (VmadmError, RunnerError) as exc:
            self.failures += 1
            log.warning("full sync failed: node not listed", reason=reason, error=str(exc))
            return False
        self.inventory = dict(listing)
        self._restart_watch(listing)
        vms = tuple(Observation(uuid, self.node, state_of(vm), asked, vm)
                    for uuid, vm in listing.items())
        names = tuple(sorted(isos if isos is not None else self.isos or ()))
        await self.reporter.send(FullSync(self.node, asked, vms, names))
        if isos is not None:
            self.isos = isos
        self.syncs += 1
        log.info("full sync sent", reason=reason, vms=len(vms), isos=len(names))
        self.synced.set()
        return True

    async def _read_isos(self) -> frozenset[str] | None:
        """The ISO names, None when the directory cannot be listed (the node itself
        answered: e.g. no such directory); RunnerError when the node cannot be reached."""
        try:
            return await self.backend.isos()
        except VmadmError as exc:
            log.warning("ISO directory not listed", error=str(exc))
            return None

    # -- the watch -------------------------------------------------------------------------

    def _restart_watch(self, baseline: dict[VmUuid, JsonObject]) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
        if self._watcher is not None:
            self._restarts_before += self._watcher.stats.stream_restarts
        watcher = self._watcher = self.backend.watch(self.watch_settings, baseline=baseline)
        self._watch_task = asyncio.create_task(self._pump(watcher), name="node-watch")

    async def _pump(self, watcher: Watcher) -> None:
        try:
            async for obs in watcher:
                if obs.vm is None:
                    self.inventory.pop(obs.uuid, None)
                else:
                    self.inventory[obs.uuid] = obs.vm
                self.reporter.observe(obs)
        except (HostKeyRejected, SshConfigError) as exc:
            self.on_fatal(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: the agent exits loudly
            self.on_fatal(exc)

    async def stop_watching(self) -> None:
        task, self._watch_task = self._watch_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def brand_of(self, uuid: VmUuid) -> str | None:
        """The VM's brand: from the last listing, else `vmadm get`; None when absent."""
        vm = self.inventory.get(uuid)
        if vm is None:
            vm = await self.backend.get(uuid)
        brand = None if vm is None else vm.get("brand")
        return brand if isinstance(brand, str) else None


async def heartbeat_loop(
    *,
    node: NodeName,
    backend: Backend,
    reporter: Reporter,
    syncer: Syncer,
    interval: float,
    started: float,
    clock: Callable[[], float] = time.time,
) -> None:
    """A heartbeat every `interval` while the node answers (module docstring), until
    cancelled; an `IsoList` first whenever the ISO images changed."""
    while True:
        began = asyncio.get_running_loop().time()
        reachable = True
        isos: frozenset[str] | None = None
        try:
            isos = await backend.isos()
        except VmadmError as exc:  # the node answered (e.g. no ISO directory)
            log.debug("ISO directory not listed", error=str(exc))
        except RunnerError as exc:
            log.warning("node not reachable: no heartbeat", error=str(exc))
            reachable = False
        if isos is not None and isos != syncer.isos:
            log.info("ISO images changed", isos=sorted(isos))
            syncer.isos = isos
            reporter.post_nowait(IsoList(node, clock(), tuple(sorted(isos))))
        if reachable:
            await reporter.heartbeat(Heartbeat(node, clock(), interval, started))
        elapsed = asyncio.get_running_loop().time() - began
        await asyncio.sleep(max(0.0, interval - elapsed))
