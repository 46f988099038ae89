"""The gateway's Prometheus families, on their own registry (served like the daemon's).

Kept here rather than in `vmd.obs.metrics` because only `vmd api` has them; they follow the
same rules (obs/metrics.py): fixed label values only (the request kind of
`REQUEST_KINDS`, the HTTP status code, a stream's outcome), nothing per VM, per key or per
principal, so a caller cannot grow the series count.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from vmd import __version__
from vmd.obs.looplag import loop_lag_histogram
from vmd.obs.metrics import OTHER, REQUEST_BUCKETS, REQUEST_KINDS, new_registry

STREAM_OUTCOMES: Final = ("final", "timeout", "shutdown", "disconnected")


def _code(code: int) -> str:
    return str(code) if 100 <= code <= 599 else OTHER


class _Reconnects(Collector):
    """`vmd_broker_reconnects_total`, read from the client's own count at scrape time."""

    def __init__(self, source: Callable[[], int]) -> None:
        self.source = source

    def _family(self, value: float = 0) -> CounterMetricFamily:
        return CounterMetricFamily(
            "vmd_broker_reconnects", "Reconnections to RabbitMQ after a lost connection.",
            value=value)

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        return [self._family(self.source())]


class ApiMetrics:
    """`vmd_api_*` families (docs/api.md lists them)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else new_registry()
        r = self.registry
        Info("vmd_build", "vmd version and Python of this process (value 1).",
             registry=r).info({"version": __version__, "process": "api",
                               "python": platform.python_version()})
        self.requests = Counter(
            "vmd_api_requests", "HTTP requests answered, by kind and status code.",
            ["kind", "code"], registry=r)
        self.request_duration = Histogram(
            "vmd_api_request_duration_seconds",
            "Time from receiving an HTTP request to sending its status (for a stream: the "
            "201), by kind.", ["kind"], buckets=REQUEST_BUCKETS, registry=r)
        self.streams = Gauge("vmd_api_streams", "ES-STREAM responses open now.", registry=r)
        self.loop_lag = loop_lag_histogram(r)  # observed by vmd.obs.looplag
        self.streams_ended = Counter(
            "vmd_api_streams_ended", "ES-STREAM responses ended, by how they ended.",
            ["outcome"], registry=r)
        self.reconnects = _Reconnects(lambda: 0)
        r.register(self.reconnects)
        self._duration = {k: self.request_duration.labels(k) for k in REQUEST_KINDS}
        self._ended = {o: self.streams_ended.labels(o) for o in STREAM_OUTCOMES}
        self._requests: dict[tuple[str, str], Counter] = {}  # made on first use (codes vary)

    def set_reconnects_source(self, source: Callable[[], int]) -> None:
        self.reconnects.source = source

    def request(self, kind: str, code: int, seconds: float) -> None:
        k = kind if kind in REQUEST_KINDS else OTHER
        c = _code(code)
        child = self._requests.get((k, c))
        if child is None:
            child = self._requests[k, c] = self.requests.labels(k, c)
        child.inc()
        self._duration[k].observe(seconds)

    def stream_ended(self, outcome: str) -> None:
        self._ended[outcome if outcome in STREAM_OUTCOMES else "disconnected"].inc()
