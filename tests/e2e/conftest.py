"""End-to-end fixtures: a real daemon, real agents and simulated nodes (tests/support/cloud.py).

Tests speak only the public protocol, as the hidden acceptance suite does: plain aio-pika
for the wire details, `vmd.client` where a convenient caller is enough, `vmctl` as a user
would. Nodes are named node1, node2 (their task queues are cleaned by tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from support.cloud import Cloud

from vmd.client import Client


@pytest.fixture
def cloud(tmp_path: Path, amqp_url_for: Callable[[str], str]) -> Iterator[Cloud]:
    c = Cloud(tmp_path, amqp_url_for("vmd"))
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
async def admin(amqp_url_for: Callable[[str], str]) -> AsyncIterator[Client]:
    async with Client(amqp_url_for("admin"), timeout=10) as client:
        yield client


@pytest.fixture
async def alice(amqp_url_for: Callable[[str], str]) -> AsyncIterator[Client]:
    async with Client(amqp_url_for("alice"), timeout=10) as client:
        yield client


@pytest.fixture
async def bob(amqp_url_for: Callable[[str], str]) -> AsyncIterator[Client]:
    async with Client(amqp_url_for("bob"), timeout=10) as client:
        yield client
