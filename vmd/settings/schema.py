"""Every section of a vmd settings file, described once, as the typed records vmd runs on.

Each class is a section (`[daemon]`, `[agent.ssh]`, ...), each field a key: its name, its
type and range (vmd.settings.types), its default. The same frozen dataclasses are what
the processes are handed (`vmd.config` re-exports them), so adding a key is one line here,
one comment in config/*.toml (a test keeps them in step) and the code that uses it.

pydantic validates a TOML document against these classes (vmd.settings.validate); it reads
each `__pydantic_config__`: a key that no field names is an error, never ignored. Code that
builds settings directly (tests, benchmarks) gets plain dataclasses, with no validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from vmd.settings.types import (
    Address,
    AmqpUrl,
    ApiKey,
    Argv,
    Attempts,
    Count,
    LogFormat,
    LogLevel,
    Name,
    Names,
    NodeNames,
    NonNegInt,
    NonNegSeconds,
    OwnerUuids,
    PathValue,
    Port,
    Principal,
    Seconds,
    StoreValue,
    UrlPrefix,
)

# Unknown keys are errors (a misspelt key would otherwise be its default, silently).
STRICT_TABLE = ConfigDict(extra="forbid")

@dataclass(frozen=True, slots=True)
class BrokerSettings:
    __pydantic_config__ = STRICT_TABLE

    url: AmqpUrl = field(repr=False)  # holds the broker password
    # First connect: attempts before giving up (exit 1); 0 = until the broker answers; None
    # (not set) = until it answers under systemd, 5 when run by hand (vmd.bus.boot_attempts).
    connect_attempts: Attempts | None = None


@dataclass(frozen=True, slots=True)
class AuthSettings:
    __pydantic_config__ = STRICT_TABLE

    admins: Names = frozenset()
    # `[auth.owners]`: a user -> the owner_uuids whose VMs it may see and command.
    owners: dict[Name, OwnerUuids] = field(default_factory=dict)
    # `[auth.agents]`: the broker user of each node agent -> the nodes it may report for
    # (docs/security.md). Required with [daemon], so no deployment runs open by accident.
    agents: dict[Name, NodeNames] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    __pydantic_config__ = STRICT_TABLE

    # A SQLite file (a path, or sqlite:PATH) or a postgresql:// URL (vmd.store.target).
    # repr=False: a refused value may hold a password, so an error never echoes it.
    store: StoreValue = field(repr=False)
    shard: NonNegInt = 0
    no_shutdown: Names = frozenset()
    start_deadline: Seconds = 330.0
    stop_grace: Seconds = 150.0
    metrics: Address = "127.0.0.1:9464"
    # The AMQP prefetch count: 0 would mean "unlimited" to the broker and remove the
    # backpressure, so it is refused; 65535 is the protocol's maximum.
    prefetch: Annotated[Count, Field(le=65535)] = 256
    drain_timeout: Seconds = 20.0
    heartbeat_interval: Seconds = 5.0
    reconcile_interval: Seconds = 60.0
    # Compute nodes an admin has put in maintenance: `maintenance`, whatever heartbeats say.
    maintenance: Names = frozenset()
    # Per principal (AMQP user): idempotency records kept (the oldest goes first), and
    # tasks pending at once (past it: 429 "Too many pending tasks"; admins are exempt).
    max_idempotency_records: Count = 10_000
    max_pending_tasks: Count = 100
    # Power history (GET /vm/<vm>/status/history): entries kept per VM (0 keeps none), and
    # for how long.
    history_keep: NonNegInt = 100
    history_retention: Seconds = 30 * 86400.0
    # With a PostgreSQL store: the leadership lease (s) of the active daemon; a standby
    # takes over at most this long after the active one stopped renewing (docs/ha.md).
    lease: Seconds = 10.0


@dataclass(frozen=True, slots=True)
class SshSettings:
    __pydantic_config__ = STRICT_TABLE

    host: Name
    # Known host keys, checked strictly (required: no host key is ever trusted on first use).
    known_hosts: PathValue
    port: Port = 22
    username: Name = "root"
    client_keys: Annotated[tuple[PathValue, ...], Field(strict=False)] = ()
    connect_timeout: Seconds = 10.0
    keepalive_interval: Seconds = 15.0
    max_sessions: Count = 8


@dataclass(frozen=True, slots=True)
class MemorySettings:
    """`[agent.memory]`: the in-process simulated hypervisor (`backend = "memory"`), for
    benchmarks and demos only (docs/agent.md)."""

    __pydantic_config__ = STRICT_TABLE

    vms: NonNegInt = 100  # VMs seeded on the node, named <node>-vm0001.example.com ...
    owners: Count = 4  # distinct owner_uuids, the same on every node
    start_seconds: NonNegSeconds = 0.0  # how long a start takes (0 = instant)
    stop_seconds: NonNegSeconds = 0.0  # how long a graceful stop or a reboot takes
    isos: Annotated[tuple[Name, ...], Field(strict=False)] = ("debian-12.iso",)


@dataclass(frozen=True, slots=True)
class AgentSettings:
    __pydantic_config__ = STRICT_TABLE

    node: Name
    vmadm: Argv = ("/usr/sbin/vmadm",)
    # The daemon's broker user: the only `user_id` whose orders this agent runs.
    daemon_user: Name = "vmd"
    heartbeat_interval: Seconds = 5.0
    poll_interval: Seconds = 60.0
    metrics: Address = "127.0.0.1:9465"
    transport: Literal["local", "ssh"] = "local"
    # Required with transport = "ssh", refused without it (vmd.settings.rules).
    ssh: SshSettings | None = None
    iso_dir: Name = "/iso"
    # How to run zonecfg on the node (the ISO mount of a start from an ISO, docs/driver.md).
    zonecfg: Argv = ("/usr/sbin/zonecfg",)
    # "vmadm", or "memory" (in-process simulated hypervisor: benchmarks).
    backend: Literal["vmadm", "memory"] = "vmadm"
    max_parallel: Count = 16
    # SIGTERM: how long running vmadm calls may finish before the agent exits anyway
    # (docs/shutdown.md); a half-run `vmadm stop` is worse than a late exit.
    drain_timeout: Seconds = 330.0
    # The journal of started tasks (a task is never run twice, docs/agent.md): one file per
    # node, `journal-<node>.jsonl`, in this directory (systemd: StateDirectory=vmd-agent).
    state_dir: PathValue = Path("/var/lib/vmd-agent")
    memory: MemorySettings = field(default_factory=MemorySettings)


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """`[api]`: the HTTP gateway (`vmd api`, docs/api.md). `keys` maps an API key to the
    principal (an AMQP user name of [auth]) the gateway publishes for; the gateway's own
    broker user (in `broker_url`) must carry RabbitMQ's `impersonator` tag."""

    __pydantic_config__ = STRICT_TABLE

    broker_url: AmqpUrl = field(repr=False)  # holds the broker password
    listen: Address = "127.0.0.1:8000"
    prefix: UrlPrefix = "/api"
    keys: Annotated[dict[ApiKey, Principal], Field(strict=False)] = field(
        default_factory=dict, repr=False)
    # Seconds to wait for vmd's answer (the first one in stream mode) before a 504.
    timeout: Seconds = 30.0
    metrics: Address = "127.0.0.1:9463"
    # SIGTERM: seconds in-flight requests may finish (streams are cut at once, with their
    # current state) before the gateway exits.
    drain_timeout: Seconds = 10.0
    # ES-STREAM responses one API key may hold open at once (past it: 429, docs/api.md).
    max_streams_per_key: Count = 32
    # As [broker] connect_attempts, for the gateway's broker (in broker_url).
    connect_attempts: Attempts | None = None


@dataclass(frozen=True, slots=True)
class LogSettings:
    __pydantic_config__ = STRICT_TABLE

    level: LogLevel = "info"
    format: LogFormat = "auto"


@dataclass(frozen=True, slots=True)
class Sections:
    """A whole file: every section it may hold (each process requires its own)."""

    __pydantic_config__ = STRICT_TABLE

    broker: BrokerSettings | None = None
    daemon: DaemonSettings | None = None
    auth: AuthSettings = field(default_factory=AuthSettings)
    agent: AgentSettings | None = None
    log: LogSettings = field(default_factory=LogSettings)
    api: ApiSettings | None = None
