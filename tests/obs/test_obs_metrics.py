"""vmd.obs.metrics: every family scraped over real HTTP and parsed, no per-VM label, label
values bounded, and a series count that does not grow with the number of VMs."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from vmd.api.metrics import ApiMetrics
from vmd.model import Action, TaskState
from vmd.obs.metrics import (
    REQUEST_KINDS,
    VM_STATUSES,
    AgentMetrics,
    DaemonMetrics,
    StatusCounts,
    new_registry,
)
from vmd.obs.metrics_http import MetricsServeError, MetricsServer, serve_metrics, split_address

# The only label names any family may have: each takes values from a small fixed set.
ALLOWED_LABELS = {
    "status", "kind", "code", "action", "outcome", "cause", "command", "le", "reason",
    # vmd_build_info, python_info (PlatformCollector), python_gc_* (GCCollector)
    "version", "process", "python", "implementation", "major", "minor", "patchlevel",
    "generation",
}
PER_VM = {"uuid", "vm", "vm_uuid", "hostname", "task_id", "correlation_id", "alias"}

DAEMON_FAMILIES = {
    "vmd_build_info", "vmd_vms", "vmd_nodes", "vmd_requests", "vmd_request_duration_seconds",
    "vmd_tasks", "vmd_task_duration_seconds", "vmd_tasks_in_flight", "vmd_status_changes",
    "vmd_drift_corrected", "vmd_reconcile_lag_seconds", "vmd_broker_reconnects",
    "vmd_frozen_observations_ignored", "vmd_idempotent_replays", "vmd_dead_lettered",
    "vmd_agent_messages_refused",
}
AGENT_FAMILIES = {
    "vmd_build_info", "vmd_vmadm_calls", "vmd_vmadm_duration_seconds", "vmd_vmadm_in_flight",
    "vmd_events_stream_restarts", "vmd_ssh_reconnects", "vmd_broker_reconnects",
    "vmd_agent_messages_refused",
}


def scrape(server: MetricsServer) -> dict[str, list[Sample]]:
    with urllib.request.urlopen(server.url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {f.name: list(f.samples) for f in text_string_to_metric_families(text)}


def value(families: dict[str, list[Sample]], sample: str, **labels: str) -> float:
    for samples in families.values():
        for s in samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"no sample {sample}{labels}")


@pytest.fixture
def daemon() -> Iterator[tuple[DaemonMetrics, MetricsServer]]:
    metrics = DaemonMetrics(new_registry())
    server = serve_metrics(metrics.registry, "127.0.0.1:0")
    yield metrics, server
    server.close()


def test_daemon_families_scraped_over_http(daemon: tuple[DaemonMetrics, MetricsServer]) -> None:
    metrics, server = daemon
    assert server.port > 0
    metrics.vm_status.reset(["running", "running", "stopped", "frozen"])
    metrics.vm_status.move("running", "stopping")
    metrics.node_status.add("online", 3)
    metrics.request("stop", 201, 0.002)
    metrics.request("list", 200, 0.0004)
    metrics.request("list", 200, 0.0007)
    metrics.task_ended(Action.STOP, TaskState.SUCCESS, 42.0)  # the model's enums work too
    metrics.task_ended("start", "REVOKED", 330.0)
    metrics.status_changed("node")
    metrics.reconcile_lag.observe(0.3)
    metrics.broker_reconnects.inc()
    metrics.frozen_ignored.inc()
    metrics.idempotent_replays.inc(2)
    metrics.drift_corrected.inc()
    metrics.tasks_in_flight.set(1)

    f = scrape(server)
    assert set(f) >= DAEMON_FAMILIES
    assert {"process_cpu_seconds", "python_info"} <= set(f)  # the standard collectors
    assert value(f, "vmd_vms", status="running") == 1
    assert value(f, "vmd_vms", status="stopping") == 1
    assert value(f, "vmd_vms", status="error") == 0  # every status is a series, even at 0
    assert {s.labels["status"] for s in f["vmd_vms"]} == set(VM_STATUSES)
    assert value(f, "vmd_nodes", status="online") == 3
    assert value(f, "vmd_requests_total", kind="list", code="200") == 2
    assert value(f, "vmd_request_duration_seconds_count", kind="list") == 2
    assert value(f, "vmd_request_duration_seconds_bucket", kind="list", le="0.0005") == 1
    assert value(f, "vmd_request_duration_seconds_bucket", kind="list", le="60.0") == 2
    assert value(f, "vmd_tasks_total", action="stop", outcome="success") == 1
    assert value(f, "vmd_tasks_total", action="start", outcome="revoked") == 1
    assert value(f, "vmd_tasks_total", action="reboot", outcome="failure") == 0
    assert value(f, "vmd_task_duration_seconds_bucket", action="start", le="300.0") == 0
    assert value(f, "vmd_task_duration_seconds_bucket", action="start", le="450.0") == 1
    assert value(f, "vmd_status_changes_total", cause="node") == 1
    assert value(f, "vmd_reconcile_lag_seconds_count") == 1
    assert value(f, "vmd_broker_reconnects_total") == 1
    assert value(f, "vmd_frozen_observations_ignored_total") == 1
    assert value(f, "vmd_idempotent_replays_total") == 2
    assert value(f, "vmd_drift_corrected_total") == 1
    assert value(f, "vmd_tasks_in_flight") == 1
    assert value(f, "vmd_build_info", process="daemon") == 1


def test_agent_families_scraped_over_http() -> None:
    metrics = AgentMetrics(new_registry())
    server = serve_metrics(metrics.registry, "127.0.0.1:0")
    try:
        metrics.vmadm_call("stop", "success", 12.5)
        metrics.vmadm_call("start", "timeout", 600.0)
        metrics.vmadm_call("frobnicate", "weird", 0.1)
        metrics.events_restarts.inc()
        metrics.ssh_reconnects.inc()
        metrics.vmadm_in_flight.inc()
        f = scrape(server)
    finally:
        server.close()
    assert set(f) >= AGENT_FAMILIES
    assert value(f, "vmd_vmadm_calls_total", command="stop", outcome="success") == 1
    assert value(f, "vmd_vmadm_calls_total", command="start", outcome="timeout") == 1
    assert value(f, "vmd_vmadm_calls_total", command="other", outcome="other") == 1
    assert value(f, "vmd_vmadm_duration_seconds_bucket", command="stop", le="10.0") == 0
    assert value(f, "vmd_vmadm_duration_seconds_bucket", command="stop", le="20.0") == 1
    assert value(f, "vmd_events_stream_restarts_total") == 1
    assert value(f, "vmd_ssh_reconnects_total") == 1
    assert value(f, "vmd_vmadm_in_flight") == 1
    assert value(f, "vmd_build_info", process="agent") == 1


@pytest.mark.parametrize("make", [pytest.param(DaemonMetrics, id="daemon"),
                                  pytest.param(AgentMetrics, id="agent")])
def test_no_family_has_a_per_vm_label(make: type[DaemonMetrics | AgentMetrics]) -> None:
    metrics = make(new_registry())
    if isinstance(metrics, DaemonMetrics):  # touch the lazily created label sets too
        for kind in REQUEST_KINDS:
            metrics.request(kind, 200, 0.001)
    server = serve_metrics(metrics.registry, "127.0.0.1:0")
    try:
        families = scrape(server)
    finally:
        server.close()
    names = {label for samples in families.values() for s in samples for label in s.labels}
    assert not names & PER_VM
    assert names <= ALLOWED_LABELS


def test_series_count_does_not_grow_with_vms() -> None:
    def series(n_vms: int) -> int:
        metrics = DaemonMetrics(new_registry())
        metrics.vm_status.reset(["running"] * n_vms)
        server = serve_metrics(metrics.registry, "127.0.0.1:0")
        try:
            families = scrape(server)
        finally:
            server.close()
        assert value(families, "vmd_vms", status="running") == n_vms
        return sum(len(s) for name, s in families.items() if name.startswith("vmd_"))

    few, many = series(1), series(100_000)
    assert few == many
    assert many < 1000


def test_unknown_label_values_are_counted_as_other() -> None:
    metrics = DaemonMetrics(new_registry())
    metrics.request("/vm/web01.example.com/status", 999, 0.1)  # a bug must not add series
    metrics.task_ended("migrate", "EXPLODED", 1.0)
    metrics.status_changed("cosmic-ray")
    text = {(s.name, tuple(sorted(s.labels.items())), s.value)
            for f in metrics.registry.collect() for s in f.samples}
    assert ("vmd_requests_total", (("code", "other"), ("kind", "other")), 1.0) in text
    assert ("vmd_tasks_total", (("action", "other"), ("outcome", "failure")), 1.0) in text
    assert ("vmd_status_changes_total", (("cause", "other"),), 1.0) in text


def test_counts_can_come_from_the_daemons_own_source() -> None:
    metrics = DaemonMetrics(new_registry())
    counts = {"running": 7, "weird": 3}
    metrics.set_vm_counts(lambda: counts)
    samples = {s.labels["status"]: s.value
               for f in metrics.registry.collect() if f.name == "vmd_vms" for s in f.samples}
    assert samples["running"] == 7
    assert "weird" not in samples  # only known statuses become series
    counts["running"] = 8  # read at scrape time, not copied at registration
    samples = {s.labels["status"]: s.value
               for f in metrics.registry.collect() if f.name == "vmd_vms" for s in f.samples}
    assert samples["running"] == 8


def test_status_counts_refuse_unknown_statuses() -> None:
    counts = StatusCounts(VM_STATUSES)
    counts.add("running")
    counts.move("running", "running")
    assert counts()["running"] == 1
    with pytest.raises(KeyError):
        counts.add("exploded")
    with pytest.raises(KeyError):
        counts.reset(["running", "exploded"])


def test_close_stops_serving() -> None:
    server = serve_metrics(new_registry(), "127.0.0.1:0")
    url = server.url
    server.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_busy_port_is_one_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(MetricsServeError) as info:
            serve_metrics(new_registry(), f"127.0.0.1:{port}")
    assert str(info.value).startswith(f"metrics address 127.0.0.1:{port}: cannot listen")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        pytest.param("127.0.0.1:9464", ("127.0.0.1", 9464), id="v4"),
        pytest.param("[::1]:0", ("::1", 0), id="v6"),
        pytest.param("localhost:80", ("localhost", 80), id="name"),
    ],
)
def test_split_address(address: str, expected: tuple[str, int]) -> None:
    assert split_address(address) == expected


@pytest.mark.parametrize("address", ["9464", ":9464", "host:", "host:99999", "host:x"])
def test_split_address_refuses(address: str) -> None:
    with pytest.raises(MetricsServeError, match="expected host:port"):
        split_address(address)


def test_operations_doc_lists_exactly_the_families() -> None:
    exposed: set[str] = set()
    samples: set[str] = set()
    for metrics in (DaemonMetrics(new_registry()), AgentMetrics(new_registry())):
        text = generate_latest(metrics.registry).decode()
        for family in text_string_to_metric_families(text):
            # prometheus_client's `<counter/histogram>_created` gauges (the units turn them off)
            if family.name.startswith("vmd_") and not family.name.endswith("_created"):
                exposed.add(family.name + ("_total" if family.type == "counter" else ""))
                samples.update(s.name for s in family.samples)
    # The gateway's families are tabled in docs/api.md; operations.md may name them.
    api_text = generate_latest(ApiMetrics(new_registry()).registry).decode()
    samples.update(s.name for f in text_string_to_metric_families(api_text) for s in f.samples)
    samples.add("vmd_api_requests_total")  # its series appear with the first request
    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    tabled = set(re.findall(r"^\| `(vmd_[a-z_]+)` \|", doc, flags=re.MULTILINE))
    assert tabled == exposed
    # Every vmd_ name the doc uses elsewhere (the alert rules) is a real sample.
    mentioned = set(re.findall(r"\b(vmd_[a-z_]+)\b", doc)) - {"vmd_daemon", "vmd_agent",
                                                              "vmd_power"}  # the wheel
    assert mentioned <= samples | exposed, mentioned - samples - exposed


def test_units_environment_drops_created_series() -> None:
    child = ("from prometheus_client import generate_latest\n"
             "from vmd.obs.metrics import DaemonMetrics\n"
             "print(generate_latest(DaemonMetrics().registry).decode())\n")
    env = {**os.environ, "PROMETHEUS_DISABLE_CREATED_SERIES": "True"}  # as the units set it
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                         env=env, timeout=60, check=True).stdout
    assert "# TYPE vmd_requests_total counter" in out
    assert "vmd_tasks_total{" in out
    assert "_created" not in out
