"""`vmd api`: Danube Cloud's REST API over HTTP, as just another AMQP command publisher.

Danube Cloud's users have scripts, a GUI and the `es` tool that speak HTTP
(`GET /api/vm/status/`, `PUT /api/vm/<vm>/status/start/`, ...). This package serves those
paths with upstream's semantics by turning each HTTP request into one request of
protocol.md, published on behalf of the caller's principal, and the reply back into the
HTTP response; `ES-STREAM` holds a 201 open until its task ends. It keeps no state, so
several gateways may run behind a load balancer. See docs/api.md.

| module | what it holds |
|---|---|
| `auth.py` | API keys (`ES-API-KEY`, `Authorization: Token`) -> principal, upstream's 403s |
| `translate.py` | HTTP <-> protocol: prefix, data, headers, JSON rendering, keep-alive schedule |
| `forward.py` | publishing through `BusClient`, retries, bus failures as 502/503/504 |
| `stream.py` | ES-STREAM: keep-alive spaces, the final state, cut at shutdown |
| `gateway.py` | the aiohttp handler: the order of the checks |
| `metrics.py` | `vmd_api_*` Prometheus families |
| `service.py` | the process: start order, impersonation check, graceful stop |
"""

from vmd.api.auth import KeyRing
from vmd.api.forward import Forwarder
from vmd.api.gateway import STREAM_LIMIT, Gateway
from vmd.api.metrics import ApiMetrics
from vmd.api.service import ApiService, StartError, check_impersonation, run
from vmd.api.stream import TaskWatch
from vmd.api.translate import keepalive_offsets

__all__ = [
    "STREAM_LIMIT",
    "ApiMetrics",
    "ApiService",
    "Forwarder",
    "Gateway",
    "KeyRing",
    "StartError",
    "TaskWatch",
    "check_impersonation",
    "keepalive_offsets",
    "run",
]
