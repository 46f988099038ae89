"""Shared fixtures: a real RabbitMQ vhost for the tests, a clean slate per test, a cuttable proxy.

The broker is the one on 127.0.0.1:5672 (scripts/ensure-rabbitmq starts it and creates the
users vmd, admin, alice, bob, vmd-api (impersonator) and vmd-agent-node1..9 with password =
user name, each with docs/security.md's least-privilege permissions: the suite runs under
them). Tests run in the vhost named by `VMD_TEST_VHOST` (default `vmd-test`), created on
first use; helpers developing in parallel set their own vhost so their runs do not see each
other's queues.

Fixtures for other suites to reuse:

- `amqp_vhost` (session): the vhost name, created if missing;
- `amqp_url`: URL for user `vmd`; `amqp_url_for(user)`: for any test user; both give a clean
  slate: every `vmd.*` queue and exchange this project declares is deleted first;
- `bus_settings(user="vmd", url=None, **overrides)`: `BusSettings` with fast retries and a
  connection named after the test (visible in `rabbitmqctl list_connections client_properties`);
- `amqp_proxy`: a started `TcpProxy` (tests/support/proxy.py) to cut connections;
  `amqp_proxy.url(user, password, vhost)`;
- `amqp_channel`: a raw aio-pika channel (user vmd) to inspect or poke the broker as an
  outside client (the acceptance suite speaks plain aio-pika too); `support.amqp` has
  `message_count` and `message_count_settles` (counts reach a queue asynchronously).

Test node names: the clean slate also deletes the task queues of nodes `node1`..`node9`; a
test that uses other node names must delete their queues itself.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from support.postgres import drop_test_stores
from support.proxy import TcpProxy
from support.strays import kill_strays

from vmd.bus import BusSettings
from vmd.bus.topology import DAEMON, node_tasks

ROOT = Path(__file__).resolve().parent.parent

BROKER_HOST = "127.0.0.1"
BROKER_PORT = 5672
TEST_NODES = tuple(f"node{i}" for i in range(1, 10))
TEST_USERS = ("vmd", "admin", "alice", "bob", "vmd-api", "guest")


def _vhost_name() -> str:
    return os.environ.get("VMD_TEST_VHOST", "vmd-test")


def url_for(user: str, vhost: str, *, host: str = BROKER_HOST, port: int = BROKER_PORT) -> str:
    return f"amqp://{user}:{user}@{host}:{port}/{vhost}"


async def _can_connect(vhost: str) -> bool:
    """Whether the vhost is set up: the daemon's user and a node agent's user (an old vhost
    made before the agent users existed gets docs/security.md's permissions on the way)."""
    for user in ("vmd", "vmd-agent-node1"):
        try:
            connection = await aio_pika.connect(url_for(user, vhost), timeout=5)
        except Exception:
            return False
        await connection.close()
    return True


def _rabbitmqctl_names(what: str, vhost: str) -> list[str]:
    if shutil.which("rabbitmqctl") is None:
        return []
    out = subprocess.run(
        ["rabbitmqctl", "-q", what, "-p", vhost, "name"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return [line.strip() for line in out.stdout.splitlines()[1:] if line.strip()]


async def _delete(vhost: str, queues: set[str], exchanges: set[str]) -> None:
    connection = await aio_pika.connect(url_for("vmd", vhost), timeout=5)
    async with connection:
        channel = await connection.channel()
        for queue in sorted(queues):
            await channel.queue_delete(queue, if_unused=False, if_empty=False)
        for exchange in sorted(exchanges):
            await channel.exchange_delete(exchange, if_unused=False)


def _known_names() -> tuple[set[str], set[str]]:
    topology = DAEMON
    for node in TEST_NODES:
        topology = topology + node_tasks(node)
    return {q.name for q in topology.queues}, {e.name for e in topology.exchanges}


@pytest.fixture(scope="session", autouse=True)
def _no_stray_simulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """At the end of the session, kill the simulator processes the tests left behind
    (the `vmd-vmadm events` of agents killed on purpose: tests/support/strays.py)."""
    yield
    kill_strays(tmp_path_factory.getbasetemp())


@pytest.fixture(autouse=True)
def _drop_test_stores() -> Iterator[None]:
    """With VMD_TEST_STORE=postgresql, drop the databases the test's daemons were given
    (tests/support/postgres.py's `daemon_store`); set up first, so it runs after every
    other fixture's teardown has stopped its daemons. A no-op on SQLite."""
    yield
    drop_test_stores()


@pytest.fixture(scope="session")
def amqp_vhost() -> Iterator[str]:
    """The test vhost, created (with the test users) if a connect to it fails; leftovers of
    earlier sessions (any `vmd.*` queue or exchange) are deleted once."""
    vhost = _vhost_name()
    if not asyncio.run(_can_connect(vhost)):
        subprocess.run([str(ROOT / "scripts" / "ensure-rabbitmq"), vhost], check=True, timeout=300)
        if not asyncio.run(_can_connect(vhost)):
            pytest.fail(f"cannot connect to RabbitMQ vhost {vhost!r} as vmd/vmd")
    queues = {n for n in _rabbitmqctl_names("list_queues", vhost) if n.startswith("vmd.")}
    exchanges = {n for n in _rabbitmqctl_names("list_exchanges", vhost) if n.startswith("vmd.")}
    if queues or exchanges:
        asyncio.run(_delete(vhost, queues, exchanges))
    yield vhost


@pytest.fixture
async def amqp_clean(amqp_vhost: str) -> str:
    """Delete this project's queues and exchanges in the test vhost (fast: by name)."""
    queues, exchanges = _known_names()
    await _delete(amqp_vhost, queues, exchanges)
    return amqp_vhost


@pytest.fixture
def amqp_url_for(amqp_clean: str) -> Callable[[str], str]:
    return lambda user: url_for(user, amqp_clean)


@pytest.fixture
def amqp_url(amqp_url_for: Callable[[str], str]) -> str:
    return amqp_url_for("vmd")


@pytest.fixture
def bus_settings(
    request: pytest.FixtureRequest, amqp_url_for: Callable[[str], str]
) -> Callable[..., BusSettings]:
    def make(user: str = "vmd", url: str | None = None, **overrides: Any) -> BusSettings:
        values: dict[str, Any] = {
            "url": url or amqp_url_for(user),
            "connection_name": f"test:{request.node.name}:{user}",
            "connect_attempts": 3,
            "retry_delay": 0.05,
            "retry_delay_max": 0.2,
            "connect_timeout": 3.0,
            "publish_timeout": 5.0,
            "drain_timeout": 2.0,
        }
        values.update(overrides)
        return BusSettings(**values)

    return make


@pytest.fixture
async def amqp_proxy() -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(BROKER_HOST, BROKER_PORT)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


@pytest.fixture
async def amqp_channel(
    request: pytest.FixtureRequest, amqp_url: str
) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(
        amqp_url, client_properties={"connection_name": f"test:{request.node.name}:raw"}
    )
    async with connection:
        yield await connection.channel()
