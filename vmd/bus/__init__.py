"""The only package that talks to RabbitMQ (aio-pika): topology, publish, consume, RPC.

Everything the rest of vmd needs is importable from here; no aio-pika or aiormq type crosses
this boundary. See docs/bus.md for the topology, the agent protocol and the reconnect and
shutdown semantics.
"""

from vmd.bus.agent import (
    decode_order,
    decode_report,
    order_message,
    report_message,
)
from vmd.bus.agent_messages import (
    AgentOrder,
    AgentReport,
    AgentTask,
    FullSync,
    Heartbeat,
    IsoList,
    ObservationReport,
    ProtocolError,
    RefusedValue,
    ResultBatch,
    SyncRequest,
    TaskResult,
    TaskUndelivered,
    order_from_json,
    to_json,
)
from vmd.bus.codec import (
    MAX_BODY,
    BodyError,
    EncodeError,
    decode,
    decode_object,
    encode,
    fragment,
)
from vmd.bus.consumer import Consumer
from vmd.bus.delivery import Delivery, TagLedger, ack_all
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
from vmd.bus.follow import BindRefused, EventFollower, EventMessage, Notify
from vmd.bus.link import unless_stopped
from vmd.bus.publish import Event, Outgoing, reply_message
from vmd.bus.rpc import DEFAULT_FINAL_TIMEOUT, DEFAULT_TIMEOUT, BusClient
from vmd.bus.service import Bus
from vmd.bus.settings import BusSettings, RetryHook, boot_attempts
from vmd.bus.topology import (
    COMMANDS_EXCHANGE,
    COMMANDS_QUEUE,
    DAEMON,
    DIRECT_REPLY_TO,
    REPORTS_QUEUE,
    STREAM_HEADER,
    Topology,
    agent_topology,
    node_tasks,
    task_queue,
)

__all__ = [
    "COMMANDS_EXCHANGE",
    "COMMANDS_QUEUE",
    "DAEMON",
    "DEFAULT_FINAL_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "DIRECT_REPLY_TO",
    "MAX_BODY",
    "REPORTS_QUEUE",
    "STREAM_HEADER",
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
    "EncodeError",
    "Event",
    "EventFollower",
    "EventMessage",
    "FullSync",
    "Heartbeat",
    "IsoList",
    "NotConnected",
    "Notify",
    "ObservationReport",
    "Outgoing",
    "ProtocolError",
    "PublishFailed",
    "PublishRefused",
    "PublishTimeout",
    "RefusedValue",
    "ReplyLost",
    "ResultBatch",
    "RetryHook",
    "RpcTimeout",
    "SyncRequest",
    "TagLedger",
    "TaskResult",
    "TaskUndelivered",
    "Topology",
    "Unroutable",
    "ack_all",
    "agent_topology",
    "boot_attempts",
    "decode",
    "decode_object",
    "decode_order",
    "decode_report",
    "encode",
    "fragment",
    "node_tasks",
    "order_from_json",
    "order_message",
    "reply_message",
    "report_message",
    "task_queue",
    "to_json",
    "unless_stopped",
]
