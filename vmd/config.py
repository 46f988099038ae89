"""Typed settings, loaded once from one TOML file and passed explicitly.

`vmd daemon -c FILE`, `vmd agent -c FILE`, `vmd api -c FILE` and `vmd check -c FILE` read the
same file, each its own sections. Every problem is reported as one line naming the section and key
(`ConfigError`), so the entry points can print it and exit 2 instead of a traceback.
`check()` collects every problem of a file at once (like `nginx -t`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_NO_STRS: tuple[str, ...] = ()

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# "auto": JSON lines when stdout is not a terminal (journald), readable text on a terminal.
LOG_FORMATS = ("auto", "json", "console")


class ConfigError(Exception):
    """A configuration problem, as one line: `<file>: [section] key: what is wrong`."""


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    url: str
    # First connect: attempts before giving up (exit 1); 0 = until the broker answers; None
    # (not set) = until it answers under systemd, 5 when run by hand (vmd.bus.boot_attempts).
    connect_attempts: int | None = None


@dataclass(frozen=True, slots=True)
class AuthSettings:
    admins: frozenset[str] = frozenset()
    owners: dict[str, frozenset[str]] = field(default_factory=dict)
    # `[auth.agents]`: the broker user of each node agent -> the nodes it may report for
    # (docs/security.md). Required with [daemon], so no deployment runs open by accident.
    agents: dict[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    store: Path
    shard: int = 0
    no_shutdown: frozenset[str] = frozenset()
    start_deadline: float = 330.0
    stop_grace: float = 150.0
    metrics: str = "127.0.0.1:9464"
    prefetch: int = 256
    drain_timeout: float = 20.0
    heartbeat_interval: float = 5.0
    reconcile_interval: float = 60.0
    # Compute nodes an admin has put in maintenance: `maintenance`, whatever heartbeats say.
    maintenance: frozenset[str] = frozenset()
    # Per principal (AMQP user): idempotency records kept (the oldest goes first), and
    # tasks pending at once (past it: 429 "Too many pending tasks"; admins are exempt).
    max_idempotency_records: int = 10_000
    max_pending_tasks: int = 100
    # Power history (GET /vm/<vm>/status/history): entries kept per VM, and for how long.
    history_keep: int = 100
    history_retention: float = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class SshSettings:
    host: str
    port: int = 22
    username: str = "root"
    client_keys: tuple[Path, ...] = ()
    known_hosts: Path = Path("/etc/vmd/known_hosts")
    connect_timeout: float = 10.0
    keepalive_interval: float = 15.0
    max_sessions: int = 8


@dataclass(frozen=True, slots=True)
class MemorySettings:
    """`[agent.memory]`: the in-process simulated hypervisor (`backend = "memory"`), for
    benchmarks and demos only (docs/agent.md)."""

    vms: int = 100  # VMs seeded on the node, named <node>-vm0001.example.com ...
    owners: int = 4  # distinct owner_uuids, the same on every node
    start_seconds: float = 0.0  # how long a start takes (0 = instant)
    stop_seconds: float = 0.0  # how long a graceful stop or a reboot takes
    isos: tuple[str, ...] = ("debian-12.iso",)


@dataclass(frozen=True, slots=True)
class AgentSettings:
    node: str
    vmadm: tuple[str, ...] = ("/usr/sbin/vmadm",)
    # The daemon's broker user: the only `user_id` whose orders this agent runs.
    daemon_user: str = "vmd"
    heartbeat_interval: float = 5.0
    poll_interval: float = 60.0
    metrics: str = "127.0.0.1:9465"
    transport: str = "local"
    ssh: SshSettings | None = None
    iso_dir: str = "/iso"
    # How to run zonecfg on the node (the ISO mount of a start from an ISO, docs/driver.md).
    zonecfg: tuple[str, ...] = ("/usr/sbin/zonecfg",)
    backend: str = "vmadm"  # "vmadm", or "memory" (in-process simulated hypervisor: benchmarks)
    max_parallel: int = 16
    # SIGTERM: how long running vmadm calls may finish before the agent exits anyway
    # (docs/shutdown.md); a half-run `vmadm stop` is worse than a late exit.
    drain_timeout: float = 330.0
    # The journal of started tasks (a task is never run twice, docs/agent.md): one file per
    # node, `journal-<node>.jsonl`, in this directory (systemd: StateDirectory=vmd-agent).
    state_dir: Path = Path("/var/lib/vmd-agent")
    memory: MemorySettings = field(default_factory=MemorySettings)


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """`[api]`: the HTTP gateway (`vmd api`, docs/api.md). `keys` maps an API key to the
    principal (an AMQP user name of [auth]) the gateway publishes for; the gateway's own
    broker user (in `broker_url`) must carry RabbitMQ's `impersonator` tag."""

    broker_url: str = field(repr=False)  # holds the broker password
    listen: str = "127.0.0.1:8000"
    prefix: str = "/api"
    keys: dict[str, str] = field(default_factory=dict, repr=False)
    # Seconds to wait for vmd's answer (the first one in stream mode) before a 504.
    timeout: float = 30.0
    metrics: str = "127.0.0.1:9463"
    # SIGTERM: seconds in-flight requests may finish (streams are cut at once, with their
    # current state) before the gateway exits.
    drain_timeout: float = 10.0
    # ES-STREAM responses one API key may hold open at once (past it: 429, docs/api.md).
    max_streams_per_key: int = 32
    # As [broker] connect_attempts, for the gateway's broker (in broker_url).
    connect_attempts: int | None = None


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything one file can hold; each process requires its own sections."""

    path: Path
    broker: BrokerSettings | None
    daemon: DaemonSettings | None
    auth: AuthSettings
    agent: AgentSettings | None
    log: LogSettings
    api: ApiSettings | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


class _Reader:
    """Reads typed values from a TOML table and records every problem found."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems

    def problem(self, section: str, key: str, text: str) -> None:
        self.problems.append(f"{self.path}: [{section}] {key}: {text}")

    def get(
        self,
        table: dict[str, Any],
        section: str,
        key: str,
        kind: Callable[[Any], T | None],
        default: T | None = None,
        *,
        required: bool = False,
        what: str = "",
    ) -> T | None:
        if key not in table:
            if required:
                self.problem(section, key, "missing (required)")
            return default
        value = kind(table[key])
        if value is None:
            self.problem(section, key, f"must be {what} (got {table[key]!r})")
            return default
        return value


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


_ATTEMPTS = "an integer >= 0 (0: until the broker answers)"


def _nonneg_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _pos_number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    return float(value) if ok else None


def _str_list(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    return None


def _host_port(value: Any) -> str | None:
    if not isinstance(value, str) or ":" not in value:
        return None
    host, _, port = value.rpartition(":")
    return value if host and port.isdigit() and int(port) < 65536 else None


def _amqp_url(value: Any) -> str | None:
    ok = isinstance(value, str) and value.startswith(("amqp://", "amqps://"))
    return value if ok else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _table(raw: dict[str, Any], name: str, r: _Reader) -> dict[str, Any] | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        r.problems.append(f"{r.path}: [{name}] must be a table")
        return None
    return value


def _parse(path: Path, raw: dict[str, Any], problems: list[str]) -> Settings:
    r = _Reader(path, problems)
    broker = None
    if (t := _table(raw, "broker", r)) is not None:
        url = r.get(t, "broker", "url", _amqp_url, required=True, what="an amqp:// URL")
        broker = BrokerSettings(url=url or "", connect_attempts=r.get(
            t, "broker", "connect_attempts", _nonneg_int, what=_ATTEMPTS))

    auth = AuthSettings()
    if (t := _table(raw, "auth", r)) is not None:
        admins = r.get(t, "auth", "admins", _str_list, _NO_STRS, what="a list of user names") or ()
        owners = _user_lists(t, "owners", ("owner_uuid", "owner uuids"), r)
        agents = _user_lists(t, "agents", ("node", "node names"), r)
        for user in sorted(agents.keys() & (owners.keys() | set(admins))):
            r.problem("auth.agents", user, "is also a principal in [auth]: a node agent's "
                      "broker user must not send requests")
        auth = AuthSettings(admins=frozenset(admins), owners=owners, agents=agents)

    daemon = None
    if (t := _table(raw, "daemon", r)) is not None:
        d = DaemonSettings(store=Path("."))
        store = r.get(t, "daemon", "store", _str, required=True, what="a file path")
        daemon = DaemonSettings(
            store=Path(store or "."),
            shard=r.get(t, "daemon", "shard", _nonneg_int, d.shard, what="an integer >= 0")
            or 0,
            no_shutdown=frozenset(
                r.get(t, "daemon", "no_shutdown", _str_list, _NO_STRS, what="a list of VMs") or ()
            ),
            start_deadline=_num(r, t, "daemon", "start_deadline", d.start_deadline),
            stop_grace=_num(r, t, "daemon", "stop_grace", d.stop_grace),
            metrics=r.get(t, "daemon", "metrics", _host_port, d.metrics, what="host:port")
            or d.metrics,
            prefetch=r.get(t, "daemon", "prefetch", _nonneg_int, d.prefetch, what="an integer")
            or d.prefetch,
            drain_timeout=_num(r, t, "daemon", "drain_timeout", d.drain_timeout),
            heartbeat_interval=_num(r, t, "daemon", "heartbeat_interval", d.heartbeat_interval),
            reconcile_interval=_num(r, t, "daemon", "reconcile_interval", d.reconcile_interval),
            maintenance=frozenset(
                r.get(t, "daemon", "maintenance", _str_list, _NO_STRS, what="a list of nodes")
                or ()
            ),
            max_idempotency_records=_pos_int(r, t, "daemon", "max_idempotency_records",
                                             d.max_idempotency_records),
            max_pending_tasks=_pos_int(r, t, "daemon", "max_pending_tasks",
                                       d.max_pending_tasks),
            history_keep=r.get(t, "daemon", "history_keep", _nonneg_int, d.history_keep,
                               what="an integer >= 0") or 0,
            history_retention=_num(r, t, "daemon", "history_retention", d.history_retention),
        )

    agent = None
    if (t := _table(raw, "agent", r)) is not None:
        a = AgentSettings(node="")
        node = r.get(t, "agent", "node", _str, required=True, what="a node name")
        transport = r.get(t, "agent", "transport", _str, a.transport, what='"local" or "ssh"')
        if transport not in ("local", "ssh"):
            r.problem("agent", "transport", f'must be "local" or "ssh" (got {transport!r})')
        backend = r.get(t, "agent", "backend", _str, a.backend, what='"vmadm" or "memory"')
        if backend not in ("vmadm", "memory"):
            r.problem("agent", "backend", f'must be "vmadm" or "memory" (got {backend!r})')
        ssh = None
        ssh_raw = t.get("ssh")
        if transport == "ssh":
            if not isinstance(ssh_raw, dict):
                r.problem("agent.ssh", "host", 'missing (required with transport = "ssh")')
            else:
                ssh = _parse_ssh(ssh_raw, r)
        agent = AgentSettings(
            node=node or "",
            vmadm=r.get(t, "agent", "vmadm", _str_list, a.vmadm, what="an argv list")
            or a.vmadm,
            daemon_user=r.get(t, "agent", "daemon_user", _str, a.daemon_user,
                              what="the daemon's broker user name") or a.daemon_user,
            heartbeat_interval=_num(r, t, "agent", "heartbeat_interval", a.heartbeat_interval),
            poll_interval=_num(r, t, "agent", "poll_interval", a.poll_interval),
            metrics=r.get(t, "agent", "metrics", _host_port, a.metrics, what="host:port")
            or a.metrics,
            transport=transport or a.transport,
            ssh=ssh,
            iso_dir=r.get(t, "agent", "iso_dir", _str, a.iso_dir, what="a path") or a.iso_dir,
            zonecfg=r.get(t, "agent", "zonecfg", _str_list, a.zonecfg, what="an argv list")
            or a.zonecfg,
            backend=backend or a.backend,
            max_parallel=r.get(t, "agent", "max_parallel", _nonneg_int, a.max_parallel,
                               what="an integer") or a.max_parallel,
            drain_timeout=_num(r, t, "agent", "drain_timeout", a.drain_timeout),
            state_dir=Path(r.get(t, "agent", "state_dir", _str, str(a.state_dir),
                                 what="a directory path") or a.state_dir),
            memory=_parse_memory(t.get("memory"), r),
        )

    log = LogSettings()
    if (t := _table(raw, "log", r)) is not None:
        level = r.get(t, "log", "level", _str, "info", what="a level name") or "info"
        if level.lower() not in LOG_LEVELS:
            r.problem("log", "level", f"must be one of {', '.join(LOG_LEVELS)}")
        fmt = r.get(t, "log", "format", _str, "auto", what="a format name") or "auto"
        if fmt not in LOG_FORMATS:
            r.problem("log", "format", f"must be one of {', '.join(LOG_FORMATS)}")
        log = LogSettings(level=level.lower(), format=fmt)

    api = _parse_api(t, r) if (t := _table(raw, "api", r)) is not None else None

    return Settings(path=path, broker=broker, daemon=daemon, auth=auth, agent=agent, log=log,
                    api=api, raw=raw)


def _pos_int(r: _Reader, t: dict[str, Any], section: str, key: str, default: int) -> int:
    value = r.get(t, section, key, _nonneg_int, default, what="an integer >= 1")
    if value == 0:
        r.problem(section, key, "must be an integer >= 1 (got 0)")
    return value or default


def _user_lists(t: dict[str, Any], key: str, what: tuple[str, str],
                r: _Reader) -> dict[str, frozenset[str]]:
    """`[auth.<key>]`: a table of user = [name, ...]; `what` = (one item, the items)."""
    out: dict[str, frozenset[str]] = {}
    raw = t.get(key, {})
    if not isinstance(raw, dict):
        r.problem("auth", key, f"must be a table of user = [{what[0]}, ...]")
        return out
    for user, names in raw.items():
        parsed = _str_list(names)
        if parsed is None:
            r.problem(f"auth.{key}", user, f"must be a list of {what[1]}")
        else:
            out[user] = frozenset(parsed)
    return out


def _num(r: _Reader, t: dict[str, Any], section: str, key: str, default: float) -> float:
    return r.get(t, section, key, _pos_number, default, what="a number > 0") or default


def _parse_ssh(t: dict[str, Any], r: _Reader) -> SshSettings:
    s = SshSettings(host="")
    host = r.get(t, "agent.ssh", "host", _str, required=True, what="a host name")
    port = r.get(t, "agent.ssh", "port", _nonneg_int, s.port, what="a port number") or s.port
    keys = r.get(t, "agent.ssh", "client_keys", _str_list, _NO_STRS, what="a list of key files")
    known = r.get(t, "agent.ssh", "known_hosts", _str, required=True, what="a file path")
    return SshSettings(
        host=host or "",
        port=port,
        username=r.get(t, "agent.ssh", "username", _str, s.username, what="a user name")
        or s.username,
        client_keys=tuple(Path(k) for k in keys or ()),
        known_hosts=Path(known or s.known_hosts),
        connect_timeout=_num(r, t, "agent.ssh", "connect_timeout", s.connect_timeout),
        keepalive_interval=_num(r, t, "agent.ssh", "keepalive_interval", s.keepalive_interval),
        max_sessions=r.get(t, "agent.ssh", "max_sessions", _nonneg_int, s.max_sessions,
                           what="an integer") or s.max_sessions,
    )


def _nonneg_number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    return float(value) if ok else None


def _parse_memory(t: Any, r: _Reader) -> MemorySettings:
    m = MemorySettings()
    if t is None:
        return m
    if not isinstance(t, dict):
        r.problems.append(f"{r.path}: [agent.memory] must be a table")
        return m
    s = "agent.memory"
    vms = r.get(t, s, "vms", _nonneg_int, m.vms, what="an integer >= 0")
    owners = r.get(t, s, "owners", _nonneg_int, m.owners, what="an integer >= 1")
    if owners == 0:
        r.problem(s, "owners", "must be an integer >= 1 (got 0)")
    isos = r.get(t, s, "isos", _str_list_or_empty, m.isos, what="a list of ISO file names")
    return MemorySettings(
        vms=m.vms if vms is None else vms,
        owners=owners or m.owners,
        start_seconds=_nonneg(r, t, s, "start_seconds", m.start_seconds),
        stop_seconds=_nonneg(r, t, s, "stop_seconds", m.stop_seconds),
        isos=m.isos if isos is None else isos,
    )


def _str_list_or_empty(value: Any) -> tuple[str, ...] | None:
    return () if value == [] else _str_list(value)


def _nonneg(r: _Reader, t: dict[str, Any], section: str, key: str, default: float) -> float:
    value = r.get(t, section, key, _nonneg_number, default, what="a number >= 0")
    return default if value is None else value


# An API key travels in a header (`ES-API-KEY: <key>`, `Authorization: Token <key>`):
# printable ASCII without spaces, and long enough not to be guessed.
API_KEY_MIN_LENGTH = 16


def _parse_api(t: dict[str, Any], r: _Reader) -> ApiSettings:
    a = ApiSettings(broker_url="")
    url = r.get(t, "api", "broker_url", _amqp_url, required=True, what="an amqp:// URL")
    prefix = r.get(t, "api", "prefix", _prefix, a.prefix,
                   what='"" or a path such as "/api" (no spaces)')
    keys: dict[str, str] = {}
    keys_raw = t.get("keys", {})
    if not isinstance(keys_raw, dict):
        r.problem("api", "keys", 'must be a table of "<api key>" = "<principal>"')
    else:
        for key, principal in keys_raw.items():
            shown = f"{key[:4]}..." if len(key) > 4 else key  # never a whole key in a message
            if not (len(key) >= API_KEY_MIN_LENGTH and key.isascii() and key.isprintable()
                    and " " not in key):
                r.problem("api.keys", shown, f"an API key must be at least {API_KEY_MIN_LENGTH} "
                          "printable ASCII characters without spaces")
            elif not isinstance(principal, str) or not principal:
                r.problem("api.keys", shown, "must be a principal (an AMQP user name)")
            else:
                keys[key] = principal
    return ApiSettings(
        broker_url=url or "",
        listen=r.get(t, "api", "listen", _host_port, a.listen, what="host:port") or a.listen,
        prefix=a.prefix if prefix is None else prefix,
        keys=keys,
        timeout=_num(r, t, "api", "timeout", a.timeout),
        metrics=r.get(t, "api", "metrics", _host_port, a.metrics, what="host:port") or a.metrics,
        drain_timeout=_num(r, t, "api", "drain_timeout", a.drain_timeout),
        max_streams_per_key=_pos_int(r, t, "api", "max_streams_per_key", a.max_streams_per_key),
        connect_attempts=r.get(t, "api", "connect_attempts", _nonneg_int, what=_ATTEMPTS),
    )


def _prefix(value: Any) -> str | None:
    """The URL prefix without its trailing "/" ("/" and "" mean none)."""
    if not isinstance(value, str) or (value and not value.startswith("/")):
        return None
    if any(c.isspace() or c in "?#" for c in value):
        return None
    return value.rstrip("/")


def _required_tables(path: Path, raw: dict[str, Any]) -> list[str]:
    """Tables a section requires: [daemon] needs [auth.agents] (listed after the other
    problems: a missing section is the first thing to fix)."""
    auth = raw.get("auth")
    if "daemon" in raw and not (isinstance(auth, dict) and "agents" in auth):
        return [f"{path}: [auth.agents] missing (required with [daemon]: the broker user of "
                "each node agent = [the nodes it reports for], docs/security.md)"]
    return []


def check(path: Path, *, sections: tuple[str, ...] = ()) -> list[str]:
    """Every problem of a file, one line each (empty when the file is valid).

    `sections` names the sections a process requires (e.g. ("broker", "daemon")).
    """
    try:
        raw = _read_toml(path)
    except ConfigError as exc:
        return [str(exc)]
    problems: list[str] = []
    _parse(path, raw, problems)
    problems.extend(f"{path}: [{name}] missing (required)" for name in sections
                    if name not in raw)
    problems.extend(_required_tables(path, raw))
    return problems


def load(path: Path, *, sections: tuple[str, ...] = ()) -> Settings:
    """Load and validate; the first problem raises ConfigError (one line)."""
    raw = _read_toml(path)
    problems: list[str] = []
    settings = _parse(path, raw, problems)
    problems.extend(f"{path}: [{name}] missing (required)" for name in sections
                    if name not in raw)
    problems.extend(_required_tables(path, raw))
    if problems:
        more = f" (and {len(problems) - 1} more; run `vmd check -c {path}`)" if len(
            problems) > 1 else ""
        raise ConfigError(problems[0] + more)
    return settings
