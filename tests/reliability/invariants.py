"""The invariants every scenario ends with, checked from the outside (docs/reliability.md).

1. **Answers** (`check_answers`): every request answered (a request lost with its connection
   is sent again with the same `message_id`, and its answer then counts); every answer to
   one `message_id` the same (the same code and `task_id`: a different one means it was
   executed twice, a *duplicate*); no answer to a request nobody sent (stray).
2. **No stuck VM** (`StuckWatch`): sampled all along, no VM is `starting`/`stopping` past
   the deadline of the task that holds it there (plus the daemon's timer tick).
3. **Convergence** (`converge`): once the load stops, vmd's `GET /vm/status` equals every
   node's `vmadm list -p -H -o uuid,state` within the reconcile bound, with no task pending.
4. **Events**: events.EventRecorder.check (no seq gap, chain intact, in order) and the last
   event of every VM says its final status.
5. **vmadm calls** (`check_calls`): per VM and action, the power calls in the simulator's
   `calls` log are never more than the tasks vmd created for it (from the 201 answers and the
   `task.done` events): no vmadm action ran twice for one task.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .cluster import NODE_STATES, RelCloud, Timing, VmInfo, node_calls, node_states
from .events import EventRecorder
from .load import READS, Answer, Load, Req

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_POWER = {"start": "start", "boot": "start", "stop": "stop", "halt": "stop", "reboot": "reboot"}
TRANSITIONAL = ("starting", "stopping")


@dataclass
class AnswerChecks:
    requests: int = 0
    answers: int = 0
    retried: int = 0  # requests sent again (same message_id) after a lost connection
    repeated: int = 0  # answers beyond the expected ones, identical to them
    unanswered: int = 0
    duplicates: int = 0  # requests answered differently: executed more than once
    stray: int = 0
    retry_reasons: Counter[str] = field(default_factory=Counter)
    by_code: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def _same(a: Answer, b: Answer) -> bool:
    return a.code == b.code and a.body == b.body


def check_answers(load: Load) -> AnswerChecks:
    c = AnswerChecks(stray=len(load.stray))
    for req in load.reqs:
        if not req.sent:
            continue
        c.requests += 1
        c.answers += len(req.answers)
        c.retried += req.attempts > 1
        for reason in req.errors:
            c.retry_reasons[reason.split("(")[0]] += 1
        if req.unanswered or not req.complete():
            c.unanswered += 1
            c.problems.append(f"unanswered: {req.user} {req.method} {req.path} "
                              f"({req.attempts} attempts, answers {req.answers})")
            continue
        assert req.first is not None
        c.by_code[req.first.code] += 1
        firsts = [a for a in req.answers if a.code == 201] if _tasked(req) \
            else [a for a in req.answers if not _final(req, a)]
        finals = [a for a in req.answers if _final(req, a)]
        c.repeated += len(req.answers) - req.expected()
        if req.op in READS or (req.method == "GET" and req.path.rstrip("/") == "/vm/status"):
            continue  # pure reads are not recorded (protocol.md §5): a repeat reads again
        if any(not _same(a, firsts[0]) for a in firsts[1:]) or \
                any(not _same(a, finals[0]) for a in finals[1:]):
            c.duplicates += 1
            c.problems.append(f"answered differently: {req.user} {req.method} {req.path} "
                              f"message_id {req.message_id}: {req.answers}")
    return c


def _tasked(req: Req) -> bool:
    # A stream request that made a task: its 201 and its final reply. Across a takeover or
    # a restart the final reply may come first (the task ended while no daemon ran: the
    # new one sends it to the restored subscriber before it answers the redelivered
    # request), so "final" is any answer but the 201, not whatever follows the first one.
    return req.stream and any(a.code == 201 for a in req.answers)


def _final(req: Req, a: Answer) -> bool:
    return _tasked(req) and a.code != 201


def _parse_time(value: str | None) -> float | None:
    if value is None:
        return None
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=dt.UTC).timestamp()


class StuckWatch:
    """Samples `GET /vm/status` (admin) and counts VMs transitional past their task's deadline.

    A VM is held in `starting`/`stopping` by its newest pending power task (a forced stop
    supersedes a graceful one and brings its own deadline: docs/fsm.md §3.5), so the clock
    starts at that task's creation (`tasks[...].time`); the bound is the longest deadline
    the load can give a task plus the daemon's timer tick and some scheduling slack. A VM
    transitional without a pending task (a KVM stop the node reports) gets the reconcile
    bound on top."""

    def __init__(self, load: Load, timing: Timing, fleet: list[VmInfo], *, every: float = 1.0,
                 slack: float = 3.0) -> None:
        self.load = load
        self.timing = timing
        self.slack = slack
        self.brands = {vm.uuid: vm.brand for vm in fleet}
        self.untasked_bound = timing.longest_deadline + slack + timing.reconcile_bound
        self.every = every
        self.samples = 0
        self.stuck: set[str] = set()
        self.problems: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="rel-stuck")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def sample(self) -> None:
        answer = await self.load.call("admin", "GET", "/vm/status")
        assert answer.code == 200, answer
        now = time.time()
        self.samples += 1
        for vm in answer.body["result"]:
            if vm["status"] not in TRANSITIONAL:
                continue
            brand = self.brands.get(vm["uuid"], "joyent")
            held = [(t, self.timing.deadline(t["action"], brand) + self.slack)
                    for t in vm["tasks"].values() if t["action"] in ("start", "stop", "reboot")]
            since: float | None = None
            bound = self.untasked_bound
            if held:
                newest, bound = max(held, key=lambda h: str(h[0]["time"]))
                since = _parse_time(newest["time"])
            else:
                since = _parse_time(vm["status_change"])
            if since is not None and now - since > bound:
                if vm["uuid"] not in self.stuck:
                    self.problems.append(
                        f"{vm['hostname']} {vm['status']} for {now - since:.1f} s since "
                        f"{'its task' if held else 'the change'} (bound {bound:.1f} s)")
                self.stuck.add(vm["uuid"])

    async def _run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.every)


async def vmd_view(load: Load) -> dict[str, dict[str, Any]]:
    answer = await load.call("admin", "GET", "/vm/status")
    assert answer.code == 200, answer
    return {vm["uuid"]: vm for vm in answer.body["result"]}


async def truth(cloud: RelCloud) -> dict[str, str | None]:
    """uuid -> the vmd status each node's state maps to (None: in-between state)."""
    states: dict[str, str | None] = {}
    for node in cloud.nodes:
        for uuid, state in (await node_states(node)).items():
            states[uuid] = NODE_STATES.get(state)
    return states


def differences(view: dict[str, dict[str, Any]], node: dict[str, str | None]) -> list[str]:
    diffs = []
    for uuid, vm in view.items():
        status = "stopped" if vm["status"] == "frozen" else vm["status"]
        want = node.get(uuid, "notcreated")
        if status != want:
            diffs.append(f"{vm['hostname']}: vmd {vm['status']}, node {want}")
        # A `current` task changes no status; one lost with a killed agent ends at its
        # deadline (30 s), which is no divergence. A power task pending is one.
        power = [t for t, info in vm["tasks"].items() if info["action"] != "current"]
        if power:
            diffs.append(f"{vm['hostname']}: tasks pending {sorted(power)}")
    diffs += [f"{uuid}: on its node, unknown to vmd" for uuid in node if uuid not in view]
    return diffs


async def converge(cloud: RelCloud, load: Load, bound: float) -> float:
    """Seconds until vmd's view equals the nodes' (AssertionError with the diff after
    `bound`)."""
    start = time.monotonic()
    diffs: list[str] = []
    while True:
        node = await truth(cloud)
        view = await vmd_view(load)
        diffs = differences(view, node)
        if not diffs:
            return time.monotonic() - start
        if time.monotonic() - start > bound:
            raise AssertionError(f"vmd != nodes after {bound:.1f} s: {diffs}")
        await asyncio.sleep(0.25)


async def events_settle(recorder: EventRecorder, load: Load, timeout: float = 10.0) -> list[str]:
    """Wait until every VM's last event says its status in vmd; the VMs for which not."""
    end = time.monotonic() + timeout
    while True:
        view = await vmd_view(load)
        behind = [f"{vm['hostname']}: vmd {vm['status']}, last event "
                  f"{recorder.last_status(uuid)}" for uuid, vm in view.items()
                  if recorder.last_status(uuid) != vm["status"]]
        if not behind or time.monotonic() > end:
            return behind
        await asyncio.sleep(0.2)


@dataclass
class CallChecks:
    power_calls: int = 0
    power_tasks: int = 0
    excess: int = 0  # vmadm actions beyond the tasks: run twice
    problems: list[str] = field(default_factory=list)


async def check_calls(cloud: RelCloud, load: Load, recorder: EventRecorder) -> CallChecks:
    tasks: dict[str, tuple[str, str]] = {}  # task_id -> (uuid, action)
    for task_id, req in load.tasks.items():
        if req.vm is not None and req.op in ("start", "stop", "stop_force", "reboot"):
            tasks[task_id] = (req.vm, "stop" if req.op == "stop_force" else req.op)
    for task_id, dones in recorder.task_done.items():
        if dones[0]["action"] in ("start", "stop", "reboot"):
            tasks[task_id] = (dones[0]["uuid"], dones[0]["action"])
    per_vm = Counter(tasks.values())
    c = CallChecks(power_tasks=len(tasks))
    calls: Counter[tuple[str, str]] = Counter()
    for node in cloud.nodes:
        for line in await node_calls(node):
            words = line.split()
            action = _POWER.get(words[0]) if words else None
            found = _UUID.search(line)
            if action and found:
                calls[found.group(0), action] += 1
    c.power_calls = sum(calls.values())
    for key, n in calls.items():
        if n > per_vm[key]:
            c.excess += n - per_vm[key]
            c.problems.append(f"{key[1]} of {key[0]}: {n} vmadm calls, {per_vm[key]} tasks")
    return c


def reads_share(load: Load) -> float:
    n = sum(1 for r in load.reqs if r.op in READS)
    return n / max(1, len(load.reqs))
