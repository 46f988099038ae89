"""Fixtures of the fast daemon tests: the daemon's parts on a fake bus and a fake clock, no
broker (tests/support/fastdaemon.py; docs/testing.md, "Fast mode").

`fast` is a daemon with the `cloud` fleet of tests/daemon/conftest.py on `node1`, seeded by
a full sync; `make_fast(**[daemon] keys)` builds one to the test's taste (not seeded). Both
are stopped at the end. Nothing here asks for the broker fixtures, so these tests run with
RabbitMQ down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from support.fastdaemon import FakeClock, FastDaemon

MakeFast = Callable[..., Awaitable[FastDaemon]]


@pytest.fixture
async def make_fast(tmp_path: Path) -> AsyncIterator[MakeFast]:
    built: list[FastDaemon] = []

    async def make(*, clock: FakeClock | None = None, **kw: Any) -> FastDaemon:
        fast = await FastDaemon.build(tmp_path, clock=clock, **kw)
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
