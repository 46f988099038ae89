"""The node watcher: every power-relevant change on a node, as `Observation`s.

Algorithm (sdc-vm-agent's, docs/driver.md vmadm fact 7, plus a periodic scan as the safety net):

1. Run `vmadm events -j -r`. Its first line, `ready`, is a snapshot of every VM; the
   watcher keeps what it knows about each VM (`known`: uuid -> the listing fields).
2. For each `create`, `modify`, `delete` line, update `known` and yield the change if it is
   power-relevant (below). The node's change time is the event's `date`.
3. When the stream ends, dies, or prints a line that is not a well-formed event, it is
   killed (whole process group / remote process) and restarted after `restart_delay`
   (1 s). The new `ready` snapshot is diffed against `known`, which yields exactly the
   changes missed meanwhile, with the `ready` line's `date` as their change time.
4. Every `scan_interval` seconds, `vmadm lookup -j` is diffed against `known` the same way
   (events can be lost); the change time of what a scan finds is the wall clock when the
   lookup returned (the state was true then, and no later than any event it reflects).
5. On a platform without `vmadm events` (`Invalid command: "events".`, legacy), the stream
   is not restarted and the scan runs every `legacy_poll_interval` seconds instead.

What it yields, exactly (one `Observation(uuid, node, state, change_time, vm)` each):

- a VM that appeared (`create` event, or new in a `ready`/scan snapshot): its state and VM;
- a VM that vanished (`delete` event, or absent from a snapshot): `state=None`, `vm=None`;
- a VM whose `state` string differs from the last one known (`modify` event or snapshot);
  every state string is reported as vmadm prints it, in-between states (`shutting_down`,
  `ready`, ...) included: mapping them is the daemon's business (docs/fsm.md §2).

Nothing else: a `modify` that changes other fields (alias, autoboot, metadata, zone_state
without a state change) only refreshes `known`. The first snapshot is the baseline and
yields nothing, unless a `baseline` was given (e.g. the `listing()` the agent sent as its
full sync): then the first snapshot is diffed against it, so nothing between the two is
lost. `vm` holds the fields of `commands.LISTING_FIELDS`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from vmd.model import JsonObject, NodeName, Observation, VmUuid
from vmd.obs.logging import get_logger

from .errors import RunnerError, VmadmError
from .events import BadEvent, Event, diff, parse_event, state_of
from .runner import Stream

log = get_logger(__name__)

_LEGACY = 'Invalid command: "events"'


@dataclass(frozen=True, slots=True)
class WatchSettings:
    restart_delay: float = 1.0  # wait before restarting a dead events stream
    scan_interval: float | None = 60.0  # safety-net lookup; None = never (tests)
    legacy_poll_interval: float = 10.0  # scan period when the platform has no events


@dataclass(slots=True)
class WatchStats:
    """Counters for metrics and tests."""

    stream_starts: int = 0
    stream_restarts: int = 0  # streams that ended or broke and were restarted
    stream_start_failures: int = 0
    bad_lines: int = 0
    events: int = 0
    scans: int = 0
    scan_failures: int = 0
    observations: int = 0
    legacy: bool = False


@dataclass(slots=True)
class _Loop:
    """The watcher's state between two turns of its loop: the events stream (its reader
    task and line queue), whether the platform has none (legacy), and when to act next."""

    next_start: float
    next_scan: float
    stream: Stream | None = None
    pump: asyncio.Future[None] | None = None
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    legacy: bool = False


class Source(Protocol):
    """What the watcher needs of the driver (`Vmadm` provides it)."""

    node: NodeName

    async def listing(self) -> dict[VmUuid, JsonObject]: ...

    async def events_stream(self) -> Stream: ...


async def _pump(stream: Stream, queue: asyncio.Queue[bytes | None]) -> None:
    try:
        while line := await stream.readline():
            queue.put_nowait(line)
    except (ValueError, OSError) as exc:  # a line over the limit, a broken pipe
        log.warning("vmadm events: read failed", error=str(exc))
    finally:
        queue.put_nowait(None)


class NodeWatcher:
    """`async for observation in watcher` (see the module docstring)."""

    def __init__(
        self,
        source: Source,
        settings: WatchSettings,
        *,
        baseline: Mapping[VmUuid, JsonObject] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.settings = settings
        self.stats = WatchStats()
        self._known: dict[VmUuid, JsonObject] | None = (
            None if baseline is None else dict(baseline)
        )
        self._clock = clock
        self._monotonic = monotonic

    @property
    def known(self) -> Mapping[VmUuid, JsonObject]:
        """The last known VMs of the node (read-only view)."""
        return MappingProxyType(self._known or {})

    def __aiter__(self) -> AsyncIterator[Observation]:
        return self._run()

    async def _run(self) -> AsyncIterator[Observation]:
        s = self.settings
        now = self._monotonic()
        loop = _Loop(next_start=now,
                     next_scan=now + s.scan_interval if s.scan_interval else math.inf)
        try:
            while True:
                now = self._monotonic()
                if loop.stream is None and not loop.legacy and now >= loop.next_start:
                    await self._start_stream(loop, now)
                if now >= loop.next_scan:
                    for observation in await self._scan():
                        yield observation
                    interval = s.legacy_poll_interval if loop.legacy else s.scan_interval
                    loop.next_scan = self._monotonic() + interval if interval else math.inf
                    continue
                if loop.stream is None:
                    wake = loop.next_scan if loop.legacy else min(loop.next_scan,
                                                                  loop.next_start)
                    await asyncio.sleep(max(0.0, wake - now))
                    continue
                event = await self._next_event(loop, loop.stream, now)
                if event is None:
                    continue
                self.stats.events += 1
                for observation in self._apply(event):
                    yield observation
        finally:
            if loop.stream is not None:
                await _end(loop.stream, loop.pump)

    async def _start_stream(self, loop: _Loop, now: float) -> None:
        """Start `vmadm events` (a failure is retried after `restart_delay`)."""
        try:
            stream = await self.source.events_stream()
        except RunnerError as exc:
            self.stats.stream_start_failures += 1
            log.warning("cannot start vmadm events", node=self.source.node, error=str(exc))
            loop.next_start = now + self.settings.restart_delay
            return
        self.stats.stream_starts += 1
        # A queue per stream: lines of a dead stream are never mixed with the snapshot
        # of its successor.
        loop.stream = stream
        loop.queue = asyncio.Queue()
        loop.pump = asyncio.ensure_future(_pump(stream, loop.queue))

    async def _next_event(self, loop: _Loop, stream: Stream, now: float) -> Event | None:
        """The stream's next event, or None: none before the next scan is due, a line of
        an event type the driver does not use, or the stream ended (or printed a line
        that is not a well-formed event) and was closed."""
        wait = loop.next_scan - now
        try:
            line = await asyncio.wait_for(loop.queue.get(), None if math.isinf(wait) else wait)
        except TimeoutError:
            return None
        if line is not None:
            try:
                return parse_event(line)
            except BadEvent as exc:
                self.stats.bad_lines += 1
                log.warning("vmadm events: a bad line; restarting", node=self.source.node,
                            error=str(exc))
        await self._stream_ended(loop, stream)
        return None

    async def _stream_ended(self, loop: _Loop, stream: Stream) -> None:
        """Close the stream; restart it after `restart_delay`, or poll on a legacy platform."""
        rc, tail = await _end(stream, loop.pump)
        loop.stream = loop.pump = None
        s = self.settings
        if _LEGACY in tail:
            loop.legacy = self.stats.legacy = True
            log.warning("no vmadm events (legacy platform): polling", node=self.source.node,
                        interval=s.legacy_poll_interval)
            loop.next_scan = self._monotonic()
        else:
            self.stats.stream_restarts += 1
            log.warning("vmadm events ended; restarting", node=self.source.node, returncode=rc,
                        stderr=tail.strip()[-200:], delay=s.restart_delay)
            loop.next_start = self._monotonic() + s.restart_delay

    def _observe(self, uuid: VmUuid, vm: JsonObject | None, when: float) -> Observation:
        self.stats.observations += 1
        return Observation(uuid, self.source.node, state_of(vm), when, vm)

    def _resync(self, snapshot: dict[VmUuid, JsonObject], when: float) -> list[Observation]:
        if self._known is None:
            self._known = snapshot
            return []
        changes = diff(self._known, snapshot)
        self._known = snapshot
        return [self._observe(uuid, vm, when) for uuid, vm in changes]

    def _apply(self, event: Event) -> list[Observation]:
        if event.type == "ready":
            assert event.vms is not None
            return self._resync(dict(event.vms), event.date)
        if self._known is None:
            self._known = {}
        if event.uuid is None:
            return []
        if event.type == "delete":
            self._known.pop(event.uuid, None)
            return [self._observe(event.uuid, None, event.date)]
        assert event.vm is not None
        old = self._known.get(event.uuid)
        self._known[event.uuid] = event.vm
        if event.type == "create" or old is None or state_of(old) != state_of(event.vm):
            return [self._observe(event.uuid, event.vm, event.date)]
        return []

    async def _scan(self) -> list[Observation]:
        try:
            current = await self.source.listing()
        except (VmadmError, RunnerError) as exc:
            self.stats.scan_failures += 1
            log.warning("scan failed", node=self.source.node, error=str(exc))
            return []
        self.stats.scans += 1
        return self._resync(current, self._clock())


async def _end(stream: Stream, pump: asyncio.Future[None] | None) -> tuple[int | None, str]:
    if pump is not None:
        pump.cancel()
    rc = await stream.close()
    return rc, stream.stderr_tail()
