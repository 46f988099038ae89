"""The thread that serves `/metrics`: prometheus_client's HTTP server, off the event loop.

Rendering never runs on, or waits for, the event loop: a scrape of 100k VMs' counts costs
the loop nothing. One `serve_metrics` for the daemon, the agent and the gateway, so the
address syntax (`host:port`, `[v6]:port`, port 0 for any free one) and the one-line error an
operator sees when it cannot be served are the same everywhere.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server


class MetricsServeError(Exception):
    """The metrics address cannot be served (one line, for the operator)."""


@dataclass(frozen=True, slots=True)
class MetricsServer:
    """A running /metrics endpoint; `close()` stops it (blocks up to ~0.5 s)."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        # shutdown() waits for serve_forever's poll loop (0.5 s) to notice; from the event
        # loop call it as `await asyncio.to_thread(server.close)`.
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def split_address(address: str) -> tuple[str, int]:
    """ "host:port" (or "[v6]:port") -> (host, port); port 0 means any free port."""
    host, sep, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise MetricsServeError(f"metrics address {address!r}: expected host:port")
    return host, int(port)


def serve_metrics(registry: CollectorRegistry, address: str) -> MetricsServer:
    """Serve `registry` on http://address/metrics from a daemon thread; return the server.

    `address` is "host:port" as in `[daemon] metrics` / `[agent] metrics`; port 0 binds a
    free port (the bound one is `server.port`).
    """
    host, port = split_address(address)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise MetricsServeError(f"metrics address {address}: cannot listen: {reason}") from None
    return MetricsServer(host=host, port=server.server_port, _server=server, _thread=thread)
