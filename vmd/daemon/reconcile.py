"""Periodic work: the reconcile against the nodes, and housekeeping (purge, memory, metrics).

Reconcile (docs/architecture.md: react to events, but also reconcile, because events can be lost):
every `[daemon] reconcile_interval` each online node's agent is asked for a full sync
(`sync_request`). The answer arrives as a `FullSync` report and is applied like any other
(vmd.daemon.reports): cause `sync`, each correction counted in
`vmd_drift_corrected_total`, each applied change's age in `vmd_reconcile_lag_seconds`.

Housekeeping, every `tick`: ended tasks older than `Options.keep_ended_seconds` leave memory
(the store keeps them; `GET /task/<id>/status` reads it), and so do the answers of idempotency
records older than `Options.idempotency_hot_seconds` (vmd.daemon.idempotency); the broker reconnect
count and the age of the oldest VM in starting/stopping are exported; and every
`Options.purge_interval` (first at start) ended tasks and idempotency keys older than 24 h
are purged from the store (in the writer thread, after the writes queued before it) and
from memory, and power history older than `[daemon] history_retention` from the store.
"""

from __future__ import annotations

import asyncio

from vmd.bus import Bus
from vmd.daemon.commit import Pipeline
from vmd.daemon.core import Core
from vmd.daemon.nodes import Nodes
from vmd.daemon.options import Clock
from vmd.obs.logging import get_logger
from vmd.obs.metrics import DaemonMetrics
from vmd.store import Store
from vmd.store.history import PURGE_BATCH

log = get_logger(__name__)


async def run_reconcile(*, nodes: Nodes, interval: float) -> None:
    """Ask every online node for a full sync every `interval` seconds, until cancelled."""
    while True:
        await asyncio.sleep(interval)
        online = nodes.online()
        for name in online:
            nodes.request_sync(name, "reconcile")
        log.debug("reconcile: full syncs requested", nodes=len(online))


async def _purge_history(pipeline: Pipeline, store: Store, now: float) -> int:
    """Old power history out of the store, a bounded batch per writer-thread call, so the
    turns written meanwhile wait for one batch at most (vmd.store.history)."""
    total = 0
    while True:
        n = await pipeline.run_store(store.purge_history, now)
        total += n
        if n < PURGE_BATCH:
            break
    if total:
        log.info("purged power history", entries=total)
    return total


async def run_housekeeping(
    *, core: Core, pipeline: Pipeline, store: Store, bus: Bus, metrics: DaemonMetrics,
    clock: Clock, tick: float, purge_interval: float,
) -> None:
    """Purge, forget and count until cancelled."""
    reconnects = bus.reconnects
    next_purge = clock()
    while True:
        now = clock()
        core.forget_ended(now)
        core.cool(now)
        seen = bus.reconnects
        if seen > reconnects:
            metrics.broker_reconnects.inc(seen - reconnects)
            reconnects = seen
        core.transitional.export(now)
        if now >= next_purge:
            next_purge = now + purge_interval
            purged = await pipeline.run_store(store.purge, now)
            await _purge_history(pipeline, store, now)
            keys = core.purge_idempotency(now)
            if purged.tasks or purged.idempotency or keys:
                log.info("purged", tasks=purged.tasks, idempotency=purged.idempotency,
                         idempotency_in_memory=keys)
        await asyncio.sleep(tick)
