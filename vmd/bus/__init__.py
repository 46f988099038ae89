"""The only package that talks to RabbitMQ (aio-pika): topology, publish, consume, RPC.

Everything the rest of vmd needs is importable from here; no aio-pika or aiormq type crosses
this boundary. See docs/bus.md for the topology, the agent protocol and the reconnect and
shutdown semantics.
"""

from vmd.bus.agent import decode_order, decode_report, send_order, send_report
from vmd.bus.agent_messages import (
    AgentOrder,
    AgentReport,
    AgentTask,
    FullSync,
    Heartbeat,
    IsoList,
    ObservationReport,
    ProtocolError,
    SyncRequest,
    TaskResult,
    TaskUndelivered,
)
from vmd.bus.codec import CONTENT_TYPE, MAX_BODY, BodyError, decode, decode_object, encode
from vmd.bus.consumer import Consumer, Handler
from vmd.bus.delivery import Delivery
from vmd.bus.errors import (
    BusClosed,
    BusError,
    BusFailed,
    ConnectFailed,
    ConnectionLost,
    NotConnected,
    PublishFailed,
    PublishRefused,
    PublishTimeout,
    ReplyLost,
    RpcTimeout,
    Unroutable,
)
from vmd.bus.follow import BindRefused, EventFollower, EventMessage
from vmd.bus.link import unless_stopped
from vmd.bus.publish import Event, Outgoing
from vmd.bus.rpc import DEFAULT_FINAL_TIMEOUT, DEFAULT_TIMEOUT, BusClient, parse_reply
from vmd.bus.service import Bus
from vmd.bus.settings import BusSettings, RetryHook, boot_attempts
from vmd.bus.topology import (
    AGENT,
    DAEMON,
    PUBLIC,
    Topology,
    agent_topology,
    node_tasks,
    task_queue,
)

__all__ = [
    "AGENT",
    "CONTENT_TYPE",
    "DAEMON",
    "DEFAULT_FINAL_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "MAX_BODY",
    "PUBLIC",
    "AgentOrder",
    "AgentReport",
    "AgentTask",
    "BindRefused",
    "BodyError",
    "Bus",
    "BusClient",
    "BusClosed",
    "BusError",
    "BusFailed",
    "BusSettings",
    "ConnectFailed",
    "ConnectionLost",
    "Consumer",
    "Delivery",
    "Event",
    "EventFollower",
    "EventMessage",
    "FullSync",
    "Handler",
    "Heartbeat",
    "IsoList",
    "NotConnected",
    "ObservationReport",
    "Outgoing",
    "ProtocolError",
    "PublishFailed",
    "PublishRefused",
    "PublishTimeout",
    "ReplyLost",
    "RetryHook",
    "RpcTimeout",
    "SyncRequest",
    "TaskResult",
    "TaskUndelivered",
    "Topology",
    "Unroutable",
    "agent_topology",
    "boot_attempts",
    "decode",
    "decode_object",
    "decode_order",
    "decode_report",
    "encode",
    "node_tasks",
    "parse_reply",
    "send_order",
    "send_report",
    "task_queue",
    "unless_stopped",
]
