"""Fixtures of the fast daemon tests: the daemon's parts on a fake bus and a fake clock, no
broker (tests/support/fastdaemon.py; docs/testing.md, "Fast mode").

`fast` is a daemon with the `cloud` fleet of tests/daemon/conftest.py on `node1`, seeded by
a full sync; `make_fast(**[daemon] keys, opts={Options values})` builds one to the test's
taste (not seeded). Both keep their store in `store_dir` and are stopped at the end.
Nothing here asks for the broker fixtures, so these tests run with RabbitMQ down.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fastdaemon import FakeClock, FastDaemon

MakeFast = Callable[..., Awaitable[FastDaemon]]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fast mode reaches for no broker: a connection the event loop would open (aio-pika's,
    anyone's) fails the test at once, so a fixture that slips in the broker cannot go
    unnoticed on a machine where RabbitMQ happens to run."""

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("tests/daemon/fast opened a network connection")

    monkeypatch.setattr(asyncio.BaseEventLoop, "create_connection", refused)


@pytest.fixture
def store_dir(tmp_path: Path) -> Iterator[Path]:
    """Where the store file goes: in memory (/dev/shm) where there is one. Each turn's
    commit is an fsync on a disk, which made the whole directory twice as slow (4.9 s
    against 2.7 s); nothing here tests durability (`restart` closes and opens the file)."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="vmd-fast-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def make_fast(store_dir: Path) -> AsyncIterator[MakeFast]:
    built: list[FastDaemon] = []

    async def make(*, clock: FakeClock | None = None, **kw: Any) -> FastDaemon:
        fast = await FastDaemon.build(store_dir, clock=clock, **kw)
        built.append(fast)
        return fast

    yield make
    for fast in reversed(built):
        if fast._tasks:
            await fast.stop()


@pytest.fixture
async def fast(make_fast: MakeFast) -> FastDaemon:
    daemon = await make_fast()
    await daemon.seed()
    return daemon
