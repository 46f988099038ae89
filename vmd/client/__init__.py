"""The Python client of vmd's public protocol (used by vmctl and the HTTP gateway).

`Client` speaks protocol.md through `vmd.bus` (this package imports no aio-pika): one
coroutine per request, stream-mode waiting with progress ticks, and a safe retry (same
`message_id`) when a reply is lost with the connection. docs/protocol.md describes the
protocol for every publisher, this client included.

The errors are the bus's, re-exported here so a caller needs only this package: every
`BusError` carries a one-line message.
"""

from vmd.bus import (
    DEFAULT_FINAL_TIMEOUT,
    DEFAULT_TIMEOUT,
    BusError,
    BusSettings,
    ConnectFailed,
    ConnectionLost,
    NotConnected,
    PublishFailed,
    PublishRefused,
    ReplyLost,
    RpcTimeout,
    Unroutable,
)
from vmd.client.client import PENDING, Client
from vmd.client.events import BindRefused, EventFollower, EventMessage, follow, matches
from vmd.client.waiting import Progress, Waiting, poll_interval, tick_interval
from vmd.model import Reply

__all__ = [
    "DEFAULT_FINAL_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "PENDING",
    "BindRefused",
    "BusError",
    "BusSettings",
    "Client",
    "ConnectFailed",
    "ConnectionLost",
    "EventFollower",
    "EventMessage",
    "NotConnected",
    "Progress",
    "PublishFailed",
    "PublishRefused",
    "Reply",
    "ReplyLost",
    "RpcTimeout",
    "Unroutable",
    "Waiting",
    "follow",
    "matches",
    "poll_interval",
    "tick_interval",
]
