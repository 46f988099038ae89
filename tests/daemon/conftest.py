"""Fixtures of the daemon tests: in-process daemons on the real broker, fake agents, clients.

Run with your own vhost while others test on this machine: `VMD_TEST_VHOST=vmd-daemon-dev`.
The in-process daemon is the real `vmd.daemon.Daemon` (store in tmp_path, settings from a
TOML file written by the test) with short loop periods; `cloud` adds a fake agent for
`node1` with a small fleet, an event log and clients for admin, alice and bob.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from support.amqp import agent_user
from support.fastdaemon import daemon_toml

from vmd import config
from vmd.bus import BusClient, BusSettings
from vmd.bus.topology import EVENTS_EXCHANGE
from vmd.daemon import Daemon, Options
from vmd.model import JsonObject, NodeStatus, Reply, Request

from .harness import BOB_OWNER, EventLog, FakeAgent, RawRequester, eventually


class ManualClock:
    """The wall clock plus an offset the test moves forward (`advance`, `advance_to`).

    It keeps moving with real time on purpose: the in-process daemon's loops (the deadline
    timer, the node monitor, housekeeping) and its turns read it while heartbeats, results
    and requests arrive over the real broker in real time, and a frozen clock would make
    every age between two of them zero (a node seen now and a minute ago look the same) and
    every "wait until then" a wait for the test. The price: real time moves it between two
    lines of a test, and a loaded machine can stall a few seconds anywhere.

    The rule the tests here follow: put the clock relative to the time under test (a task's
    deadline, a node's last sighting) with `advance_to`, not by a sum of `advance`s counted
    from the test's start, and stay at least `MARGIN` seconds of real time away from any
    edge a running loop could cross early ("not yet" checks); an edge to cross is put well
    past (`edge + 1`), which real time only widens. The exact edges are tested in
    tests/daemon/fast on a frozen `FakeClock`, without the broker.
    """

    # Real seconds a "not yet" check stays clear of its edge: far above any stall seen on
    # a loaded CI machine (a few seconds), cheap because the test jumps the clock anyway.
    MARGIN = 60.0

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def advance_to(self, when: float) -> None:
        """Jump to `when` (POSIX seconds; later than now), from where real time goes on."""
        now = self()
        assert when >= now, f"the clock only goes forward ({when} < {now})"
        self.offset += when - now


def daemon_options(**kw: Any) -> Options:
    values: dict[str, Any] = {"tick": 0.05, "retry_delay": 0.05, "publish_timeout": 3.0,
                              "connect_attempts": 2, "retry_delay_max": 0.2,
                              "close_timeout": 1.0}
    values.update(kw)
    return Options(**values)


@pytest.fixture
def write_config(tmp_path: Path, amqp_url: str) -> Callable[..., Path]:
    def write(url: str | None = None, **daemon: Any) -> Path:
        path = tmp_path / "vmd.toml"
        path.write_text(daemon_toml(url or amqp_url, tmp_path / "vmd.sqlite3", **daemon))
        return path

    return write


StartDaemon = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def start_daemon(write_config: Callable[..., Path]) -> AsyncIterator[StartDaemon]:
    """`await start_daemon(options=..., url=..., **[daemon] keys)`: started, stopped at the end."""
    started: list[Daemon] = []

    async def start(*, options: Options | None = None, url: str | None = None,
                    **daemon: Any) -> Daemon:
        settings = config.load(write_config(url, **daemon), sections=("broker", "daemon"))
        d = Daemon(settings, options or daemon_options())
        await d.start()
        started.append(d)
        return d

    yield start
    for d in reversed(started):
        if d.running:
            await d.shutdown()


@pytest.fixture
async def make_agent(
    bus_settings: Callable[..., BusSettings],
) -> AsyncIterator[Callable[..., Awaitable[FakeAgent]]]:
    agents: list[FakeAgent] = []

    async def make(node: str = "node1", *, beat: bool = True, **kw: Any) -> FakeAgent:
        agent = FakeAgent(bus_settings(agent_user(node)), node, **kw)
        agents.append(agent)
        return await agent.start(beat=beat)

    yield make
    for agent in reversed(agents):
        await agent.close()


@pytest.fixture
async def make_client(
    bus_settings: Callable[..., BusSettings],
) -> AsyncIterator[Callable[..., Awaitable[BusClient]]]:
    clients: list[BusClient] = []

    async def make(user: str = "alice", **kw: Any) -> BusClient:
        client = BusClient(bus_settings(user, **kw))
        clients.append(client)
        await client.start()
        return client

    yield make
    for client in reversed(clients):
        await client.close()


@pytest.fixture
async def events(amqp_channel: aio_pika.abc.AbstractChannel,
                 amqp_url_for: Callable[[str], str]) -> AsyncIterator[EventLog]:
    """Every event, seen by an admin as a subscriber sees them; the exchange is declared
    first as the daemon would (an admin may not declare it)."""
    await amqp_channel.declare_exchange(EVENTS_EXCHANGE, "topic", durable=True)
    connection = await aio_pika.connect(amqp_url_for("admin"))
    async with connection:
        yield await EventLog(await connection.channel()).start()


@pytest.fixture
async def raw(amqp_url_for: Callable[[str], str]) -> AsyncIterator[Callable[..., Any]]:
    opened: list[RawRequester] = []

    async def make(user: str = "admin") -> RawRequester:
        requester = RawRequester(amqp_url_for(user), user)
        opened.append(requester)
        return await requester.start()

    yield make
    for requester in opened:
        await requester.close()


@dataclass
class Cloud:
    """A daemon with one fake node (`node1`) and a small fleet, seen by three clients."""

    daemon: Daemon
    agent: FakeAgent
    events: EventLog
    admin: BusClient
    alice: BusClient
    bob: BusClient

    async def call(self, user: str, method: str, path: str, data: JsonObject | None = None,
                   **kw: Any) -> Reply:
        client: BusClient = getattr(self, user)
        return await client.call(Request(method, path, data or {}), timeout=10, **kw)

    def vm(self, hostname: str) -> Any:
        return self.daemon.world.vms.by_hostname[hostname]


FLEET = (
    (1, "web01.example.com", {"state": "running"}),
    (2, "web02.example.com", {"state": "stopped"}),
    (3, "db01.example.com", {"state": "running", "owner": BOB_OWNER}),
    (4, "internal.example.com", {"state": "running"}),
    (5, "zone01.example.com", {"state": "stopped", "brand": "joyent"}),
)


async def seed(daemon: Daemon, agent: FakeAgent) -> None:
    for n, hostname, kw in FLEET:
        agent.add(n, hostname, **kw)
    await agent.full_sync()
    await eventually(lambda: len(daemon.world.vms) >= len(FLEET), what="the fleet")
    node = daemon.world.nodes
    await eventually(lambda: agent.node in node and node[agent.node].status is NodeStatus.ONLINE,
                     what="node1 online")
    # No sync request to wait for: the node's own full sync made it online (its report
    # proves it alive, vmd.daemon.nodes), and a node online by its sync is not asked again.


@pytest.fixture
async def cloud(
    start_daemon: StartDaemon,
    make_agent: Callable[..., Awaitable[FakeAgent]],
    make_client: Callable[..., Awaitable[BusClient]],
    events: EventLog,
) -> Cloud:
    daemon = await start_daemon()
    agent = await make_agent("node1")
    await seed(daemon, agent)
    return Cloud(daemon, agent, events, await make_client("admin"), await make_client("alice"),
                 await make_client("bob"))
