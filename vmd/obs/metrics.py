"""Every Prometheus metric family of the three processes (served by vmd.obs.metrics_http).

Why one module: metric names, labels and buckets are a contract with the operator's
dashboards and alerts (docs/operations.md lists them), so they are defined once, here, not
where they are incremented. Two rules hold for every family:

- No label carries a per-VM value (no uuid, hostname, task id): at 100k VMs a per-VM series
  costs seconds of rendering per scrape (docs/operations.md, Metrics). Per-VM detail goes to
  the logs. Every label value comes from a fixed set; anything else is counted as "other",
  so a bug cannot explode the series count (and a metric never crashes a process).
- Counts by status are read at scrape time from a small mapping the owner already keeps
  (`StatusCounts`), so they cost nothing per VM, neither per change nor per scrape.

Families live on an explicit `CollectorRegistry` (tests create fresh ones) that also holds
the standard process, platform and GC collectors.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vmd import __version__
from vmd.model import Action, Cause, NodeStatus, OutcomeKind, VmStatus
from vmd.obs.looplag import loop_lag_histogram

OTHER: Final = "other"

REQUEST_KINDS: Final = (
    "list", "get", "current", "start", "stop", "reboot", "define", "task", "history", OTHER)
TASK_ACTIONS: Final = tuple(a.value for a in Action)
TASK_OUTCOMES: Final = ("success", "failure", "revoked")
TRANSITION_ACTIONS: Final = ("start", "stop", "reboot")
TRANSITION_OUTCOMES: Final = ("success", "failure")
CAUSES: Final = tuple(c.value for c in Cause)
VM_STATUSES: Final = tuple(s.value for s in VmStatus)
NODE_STATUSES: Final = tuple(s.value for s in NodeStatus)
VMADM_COMMANDS: Final = (
    "start", "stop", "reboot", "update", "list", "lookup", "get", "info", "events", OTHER)
# The agent's classification of a finished call, plus: killed at its time limit ("timeout")
# and could not be run at all, e.g. SSH down ("error").
VMADM_OUTCOMES: Final = (*(o.value for o in OutcomeKind), "timeout", "error")
# Why an agent-protocol message was refused at a trust edge (docs/security.md): its sender
# (`user_id`) is no broker user this process knows for that role, is not configured for
# the node the message speaks for, sent a result that does not match the task (another
# node's, another VM's), a task "dead-lettered" by someone else than the daemon, or a
# value the daemon could not keep (vmd.bus.agent_fields: an item left out of its report, or
# a report refused whole).
REFUSAL_REASONS: Final = ("unknown_sender", "wrong_node", "wrong_task", "not_daemon",
                          "bad_value")

# A request is answered from memory in well under a millisecond, or waits on the store.
REQUEST_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0)
# vmadm start/stop take seconds to minutes (a Windows guest has 300 s to shut down).
TASK_BUCKETS: Final = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0, 450.0, 600.0)
# An event arrives within a second; a change found by the periodic poll takes up to its
# interval (60 s by default); a node that was away longer shows in the top buckets.
LAG_BUCKETS: Final = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

CountsSource = Callable[[], Mapping[str, int]]


def _known(value: object, allowed: tuple[str, ...]) -> str:
    text = str(value)
    return text if text in allowed else OTHER


def _code(code: int) -> str:
    return str(code) if isinstance(code, int) and 100 <= code <= 599 else OTHER


def new_registry() -> CollectorRegistry:
    """A fresh registry holding the standard process, platform and GC collectors."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)  # registers nothing where the interpreter has no gc stats
    return registry


class StatusCounts:
    """How many records are in each status, kept by their owner on the event loop.

    The scrape thread reads it while the loop changes it. Every known status is a key from
    the start and the collector only calls `.get` on known keys, so the dict never resizes
    and is never iterated across threads; an int read is atomic. An unknown status raises
    KeyError: that is a bug in the caller, not something to count.
    """

    def __init__(self, statuses: Iterable[str]) -> None:
        self._counts: dict[str, int] = dict.fromkeys(statuses, 0)

    def add(self, status: str, n: int = 1) -> None:
        self._counts[_existing(self._counts, status)] += n

    def remove(self, status: str, n: int = 1) -> None:
        self._counts[_existing(self._counts, status)] -= n

    def move(self, old: str, new: str) -> None:
        """One record changed status (old == new is a no-op)."""
        if old != new:
            self.remove(old)
            self.add(new)

    def reset(self, statuses: Iterable[str]) -> None:
        """Recount from scratch (after loading the store): one status per record."""
        fresh = dict.fromkeys(self._counts, 0)
        for status in statuses:
            fresh[_existing(fresh, status)] += 1
        for key, value in fresh.items():
            self._counts[key] = value

    def __call__(self) -> Mapping[str, int]:
        return self._counts


def _existing(counts: dict[str, int], status: str) -> str:
    if status not in counts:
        raise KeyError(f"unknown status {status!r}")
    return status


class _CountsCollector(Collector):
    """One gauge family, one series per known value, read from `source` at scrape time."""

    def __init__(self, name: str, documentation: str, label: str,
                 values: tuple[str, ...], source: CountsSource) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self.values = values
        self.source = source

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=[self.label])

    def describe(self) -> Iterable[Metric]:
        # Lets the registry check names without calling the source at registration.
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        counts = self.source()
        family = self._family()
        for value in self.values:
            family.add_metric([value], counts.get(value, 0))
        return [family]


def _build_info(registry: CollectorRegistry, process: str) -> None:
    Info("vmd_build", "vmd version and Python of this process (value 1).",
         registry=registry).info({
             "version": __version__, "process": process,
             "python": platform.python_version()})


class DaemonMetrics:
    """The daemon's families. Label sets are fixed; see docs/operations.md for each."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 vm_counts: CountsSource | None = None,
                 node_counts: CountsSource | None = None) -> None:
        self.registry = registry if registry is not None else new_registry()
        r = self.registry
        _build_info(r, "daemon")
        self.loop_lag = loop_lag_histogram(r)  # observed by vmd.obs.looplag
        # Zeros until the daemon fills them (`vm_status.reset(...)` after loading the store,
        # then `.move(old, new)` per change), or hands in its own source (`set_vm_counts`).
        self.vm_status = StatusCounts(VM_STATUSES)
        self.node_status = StatusCounts(NODE_STATUSES)
        self.vms = _CountsCollector(
            "vmd_vms", "VMs known to this daemon, by status.", "status", VM_STATUSES,
            vm_counts or self.vm_status)
        self.nodes = _CountsCollector(
            "vmd_nodes", "Compute nodes known to this daemon, by status.", "status",
            NODE_STATUSES, node_counts or self.node_status)
        r.register(self.vms)
        r.register(self.nodes)
        self.requests = Counter(
            "vmd_requests", "Requests answered, by kind and reply code.",
            ["kind", "code"], registry=r)
        self.request_duration = Histogram(
            "vmd_request_duration_seconds",
            "Time from receiving a request to publishing its (first) reply, by kind.",
            ["kind"], buckets=REQUEST_BUCKETS, registry=r)
        self.tasks = Counter(
            "vmd_tasks", "Tasks ended, by action and outcome.", ["action", "outcome"],
            registry=r)
        self.task_duration = Histogram(
            "vmd_task_duration_seconds", "Time from creating a task to its end, by action.",
            ["action"], buckets=TASK_BUCKETS, registry=r)
        self.tasks_in_flight = Gauge(
            "vmd_tasks_in_flight", "Tasks sent to node agents and not ended yet.", registry=r)
        self.status_changes = Counter(
            "vmd_status_changes", "VM status changes applied, by cause.", ["cause"],
            registry=r)
        self.drift_corrected = Counter(
            "vmd_drift_corrected",
            "VM statuses the periodic reconcile found wrong and corrected (missed events).",
            registry=r)
        self.reconcile_lag = Histogram(
            "vmd_reconcile_lag_seconds",
            "Time from a change on a node (its change time) to vmd applying it.",
            buckets=LAG_BUCKETS, registry=r)
        self.broker_reconnects = Counter(
            "vmd_broker_reconnects", "Reconnections to RabbitMQ after a lost connection.",
            registry=r)
        self.frozen_ignored = Counter(
            "vmd_frozen_observations_ignored",
            "Node observations not applied because the VM is frozen (docs/fsm.md §4).",
            registry=r)
        self.idempotent_replays = Counter(
            "vmd_idempotent_replays",
            "Requests answered from the idempotency record instead of running again.",
            registry=r)
        self.dead_lettered = Counter(
            "vmd_dead_lettered",
            "Requests sent to the vmd.dead queue (unparsable without reply_to, or a reply_to "
            "not allowed).",
            registry=r)
        self.refused = RefusedCounter(r)
        self.idempotency_evicted = Counter(
            "vmd_idempotency_evicted",
            "Idempotency records dropped before 24 h: their principal reached "
            "[daemon] max_idempotency_records.", registry=r)
        self.transition_duration = Histogram(
            "vmd_transition_duration_seconds",
            "Time from a VM entering starting/stopping to leaving it, by action and outcome.",
            ["action", "outcome"], buckets=TASK_BUCKETS, registry=r)
        self.transitional_oldest = Gauge(
            "vmd_transitional_oldest_seconds",
            "Age of the oldest VM now in starting or stopping (0 when none).", registry=r)
        self._transitions = {(a, o): self.transition_duration.labels(a, o)
                             for a in TRANSITION_ACTIONS for o in TRANSITION_OUTCOMES}
        self.internal_errors = Counter(
            "vmd_internal_errors",
            "Requests answered 500 Internal error and dead-lettered: an answer, event, order "
            "or store row of theirs could not be encoded, or they were past the delivery "
            "limit (a bug; each is logged).",
            registry=r)
        self.delivery_limit_exceeded = Counter(
            "vmd_delivery_limit_exceeded",
            "Deliveries dead-lettered unhandled: redelivered more often than the delivery "
            "limit (each time the process died while it was in hand).",
            registry=r)
        # Leadership on a PostgreSQL store (vmd.daemon.leadership, docs/ha.md); with SQLite
        # the one daemon is always the leader (1) at epoch 0.
        self.leader = Gauge(
            "vmd_leader", "1 on the active daemon, 0 on a standby.", registry=r)
        self.leader.set(1)
        self.leader_epoch = Gauge(
            "vmd_leader_epoch", "The lease epoch this daemon won (0: none yet).", registry=r)
        self.takeovers = Counter(
            "vmd_takeovers",
            "Times this daemon took the lease over from another holder (epoch > 1).",
            registry=r)
        # Children for the fixed label sets: series exist (at 0) from the start, so rate()
        # and absent-series alerts work, and the hot path skips labels() (~1 µs a call).
        self._tasks = {(a, o): self.tasks.labels(a, o)
                       for a in (*TASK_ACTIONS, OTHER) for o in TASK_OUTCOMES}
        self._task_duration = {a: self.task_duration.labels(a) for a in (*TASK_ACTIONS, OTHER)}
        self._request_duration = {k: self.request_duration.labels(k) for k in REQUEST_KINDS}
        self._causes = {c: self.status_changes.labels(c) for c in (*CAUSES, OTHER)}
        self._requests: dict[tuple[str, str], Counter] = {}  # made on first use (codes vary)

    def set_vm_counts(self, source: CountsSource) -> None:
        """Read VM counts from `source` at scrape time (called from the scrape thread)."""
        self.vms.source = source

    def set_node_counts(self, source: CountsSource) -> None:
        self.nodes.source = source

    def request(self, kind: str, code: int, seconds: float) -> None:
        """One request answered: `kind` from REQUEST_KINDS, `code` the reply code."""
        k, c = _known(kind, REQUEST_KINDS), _code(code)
        child = self._requests.get((k, c))
        if child is None:
            child = self._requests[k, c] = self.requests.labels(k, c)
        child.inc()
        self._request_duration[k].observe(seconds)

    def task_ended(self, action: str, outcome: str, seconds: float) -> None:
        """One task ended: `outcome` is SUCCESS, FAILURE or REVOKED (any case)."""
        a = _known(action, TASK_ACTIONS)
        o = _known(str(outcome).lower(), TASK_OUTCOMES)
        if o == OTHER:
            o = "failure"  # a task ends in one of three states; anything else is a failure
        self._tasks[a, o].inc()
        self._task_duration[a].observe(seconds)

    def status_changed(self, cause: str) -> None:
        self._causes[_known(cause, CAUSES)].inc()

    def transition(self, action: str, outcome: str, seconds: float) -> None:
        """A VM left starting/stopping: `action` start/stop/reboot, `outcome` success/failure."""
        child = self._transitions.get((action, outcome))
        if child is not None:
            child.observe(seconds)


class AgentMetrics:
    """The node agent's families (one agent serves one compute node, hence no node label)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else new_registry()
        r = self.registry
        _build_info(r, "agent")
        self.loop_lag = loop_lag_histogram(r)  # observed by vmd.obs.looplag
        self.vmadm_calls = Counter(
            "vmd_vmadm_calls", "vmadm invocations ended, by command and outcome.",
            ["command", "outcome"], registry=r)
        self.vmadm_duration = Histogram(
            "vmd_vmadm_duration_seconds", "Wall time of a vmadm invocation, by command.",
            ["command"], buckets=TASK_BUCKETS, registry=r)
        self.vmadm_in_flight = Gauge(
            "vmd_vmadm_in_flight", "vmadm invocations running now.", registry=r)
        self.events_restarts = Counter(
            "vmd_events_stream_restarts",
            "Restarts of the `vmadm events` stream (it ended or failed).", registry=r)
        self.ssh_reconnects = Counter(
            "vmd_ssh_reconnects", "SSH reconnections to the compute node after a loss.",
            registry=r)
        self.broker_reconnects = Counter(
            "vmd_broker_reconnects", "Reconnections to RabbitMQ after a lost connection.",
            registry=r)
        self.refused = RefusedCounter(r)
        self._calls = {(c, o): self.vmadm_calls.labels(c, o)
                       for c in VMADM_COMMANDS for o in (*VMADM_OUTCOMES, OTHER)}
        self._duration = {c: self.vmadm_duration.labels(c) for c in VMADM_COMMANDS}

    def vmadm_call(self, command: str, outcome: str, seconds: float) -> None:
        """One vmadm invocation ended (`outcome` from VMADM_OUTCOMES)."""
        c = _known(command, VMADM_COMMANDS)
        self._calls[c, _known(outcome, VMADM_OUTCOMES)].inc()
        self._duration[c].observe(seconds)


class RefusedCounter:
    """`vmd_agent_messages_refused_total{reason}`, one child per reason of REFUSAL_REASONS
    (an unknown reason counts as "other")."""

    def __init__(self, registry: CollectorRegistry) -> None:
        family = Counter(
            "vmd_agent_messages_refused",
            "Agent-protocol messages dropped because their sender may not send them.",
            ["reason"], registry=registry)
        self._children = {r: family.labels(r) for r in (*REFUSAL_REASONS, OTHER)}

    def inc(self, reason: str) -> None:
        self._children[_known(reason, REFUSAL_REASONS)].inc()
