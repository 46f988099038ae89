"""Everything the agent tells the daemon, in order, confirmed, retried until it is through.

One publisher coroutine (`run`) owns the order: task results, full syncs and ISO lists are
queued with `post` (the future resolves once the broker confirmed it) and node observations
with `observe`. Consecutive observations are merged into one `ObservationReport`, and
consecutive task results into one `ResultBatch` (at most `max_batch` each): those made in
the same loop turn always travel together, and while a publish waits for its confirms the
next ones pile up and leave in the next batch, so a burst costs few messages and the first
report is never delayed by a timer.

While a task of a VM runs, the observations of that VM are held (`hold`) and travel in
the task's result (`take`), the change the task caused among them: a command costs the
daemon one report (one consume, one store turn, one ack), not a result and an observation.
Only the order of that VM's reports moves, and not across them: what is held was seen
after everything of the VM already queued and goes out with a result posted after it. A
change of the VM while its task runs is thus reported when the task ends (bounded by the
task's deadline); the watch's observation of the change that comes only after the result
went (the events stream behind vmadm's exit) goes on its own, and the daemon finds it
already applied (docs/agent.md, "Reports").

A publish that fails (`PublishFailed`: not connected, no confirm in time, the connection
dropped) is retried, whole batch, after a back-off (0.2 s doubling to 5 s): a repeat is
harmless (the daemon ends a task once and orders observations by the node's change time),
a lost result is not. Heartbeats do not go through the queue: they are transient, best
effort, and must not wait behind a stuck publish (`heartbeat`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable

from vmd.bus import (
    AgentReport,
    Bus,
    BusError,
    Heartbeat,
    ObservationReport,
    Outgoing,
    PublishFailed,
    ResultBatch,
    TaskResult,
    report_message,
)
from vmd.model import NodeName, Observation, VmUuid
from vmd.obs.logging import get_logger

log = get_logger(__name__)

_Item = Observation | tuple[AgentReport, "asyncio.Future[None]"]
# A message to publish, the futures it resolves, how many observations it carries alone.
_Message = tuple[Outgoing, list["asyncio.Future[None]"], int]


class Reporter:
    """The agent's outgoing reports (see the module docstring)."""

    def __init__(
        self,
        bus: Bus,
        node: NodeName,
        *,
        clock: Callable[[], float] = time.time,
        max_batch: int = 1000,
        retry_delay: float = 0.2,
        retry_delay_max: float = 5.0,
    ) -> None:
        self.bus = bus
        self.node = node
        self._user = bus.settings.user  # every report carries it: the daemon checks it
        self._clock = clock
        self._max_batch = max_batch
        self._retry_delay = retry_delay
        self._retry_delay_max = retry_delay_max
        self._items: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._holds: Counter[VmUuid] = Counter()  # VM -> its tasks running
        self._held: dict[VmUuid, list[Observation]] = {}
        self.sent = 0  # messages confirmed
        self.observations = 0  # observations confirmed (alone, not those in results)
        self.failures = 0  # failed publish attempts

    @property
    def pending(self) -> int:
        return len(self._items)

    def observe(self, observation: Observation) -> None:
        held = self._held.get(observation.uuid)
        if held is not None:
            held.append(observation)
            return
        self._items.append(observation)
        self._poke()

    def hold(self, uuid: VmUuid) -> None:
        """A task of `uuid` starts: its observations wait for the task's result."""
        self._holds[uuid] += 1
        self._held.setdefault(uuid, [])

    def take(self, uuid: VmUuid) -> tuple[Observation, ...]:
        """The task `hold` was called for ended: what was held, for its result (call it
        right before posting the result, in the same loop step, so nothing comes between)."""
        held = tuple(self._held.get(uuid, ()))
        self._release(uuid)
        return held

    def unhold(self, uuid: VmUuid) -> None:
        """The task ended without a result (a bug, a cancel): what was held goes alone."""
        held = self._held.get(uuid, [])
        self._release(uuid)
        for observation in held:
            self.observe(observation)

    def _release(self, uuid: VmUuid) -> None:
        self._holds[uuid] -= 1
        if self._holds[uuid] > 0:
            self._held[uuid] = []  # the next task of the VM holds what comes from now on
        else:
            del self._holds[uuid]
            self._held.pop(uuid, None)

    def post(self, report: AgentReport) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._items.append((report, future))
        self._poke()
        return future

    def post_nowait(self, report: AgentReport) -> None:
        """Post without waiting for the confirm (a failure is logged by `run`)."""
        self.post(report).add_done_callback(_retrieve)

    async def send(self, report: AgentReport) -> None:
        """Post and wait for the confirm; a cancelled caller does not withdraw the report."""
        await asyncio.shield(self.post(report))

    def _poke(self) -> None:
        self._idle.clear()
        self._wake.set()

    async def flush(self, timeout: float) -> bool:
        """Wait until everything posted so far is confirmed; False at the timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def heartbeat(self, beat: Heartbeat) -> bool:
        """Publish one heartbeat, waiting at most one interval; False if it did not go."""
        try:
            await self.bus.publish(report_message(beat, user_id=self._user), timeout=beat.interval)
        except BusError as exc:
            log.debug("heartbeat not sent", error=str(exc))
            return False
        return True

    def _batch(self) -> list[_Message]:
        """Take what is queued: consecutive observations merged, consecutive results
        merged, in order."""
        out: list[_Message] = []
        observations: list[Observation] = []
        results: list[tuple[TaskResult, asyncio.Future[None]]] = []

        def flush() -> None:
            if observations:
                report = ObservationReport(self.node, self._clock(), tuple(observations))
                out.append((report_message(report, user_id=self._user), [], len(observations)))
                observations.clear()
            if results:
                out.append(self._results_message(results))
                results.clear()

        while self._items:
            item = self._items.popleft()
            if isinstance(item, Observation):
                if results:
                    flush()
                observations.append(item)
            elif isinstance(item[0], TaskResult):
                if observations:
                    flush()
                results.append((item[0], item[1]))
            else:
                flush()
                out.append((report_message(item[0], user_id=self._user), [item[1]], 0))
            if len(observations) >= self._max_batch or len(results) >= self._max_batch:
                flush()
        flush()
        return out

    def _results_message(self, results: list[tuple[TaskResult, asyncio.Future[None]]]
                         ) -> _Message:
        """One result as the `result` it is (what an older daemon reads too), more as one
        `ResultBatch`."""
        futures = [future for _, future in results]
        if len(results) == 1:
            return report_message(results[0][0], user_id=self._user), futures, 0
        batch = ResultBatch(self.node, self._clock(), tuple(r for r, _ in results))
        return report_message(batch, user_id=self._user), futures, 0

    async def run(self) -> None:
        """Publish until cancelled (shutdown: `flush` first, cancel last)."""
        delay = self._retry_delay
        batch: list[_Message] = []
        while True:
            if not batch:
                if not self._items:
                    self._idle.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch = self._batch()
            try:
                await self.bus.publish_many([message for message, _, _ in batch])
            except PublishFailed as exc:
                self.failures += 1
                log.warning("reports not confirmed; retrying", error=str(exc),
                            messages=len(batch), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_delay_max)
                continue
            except BusError as exc:  # closed or failed for good: nothing will go out
                for _, futures, _ in batch:
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                batch = []
                continue
            delay = self._retry_delay
            for _, futures, n in batch:
                self.sent += 1
                self.observations += n
                for future in futures:
                    if not future.done():
                        future.set_result(None)
            batch = []


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
