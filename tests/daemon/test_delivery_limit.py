"""Issue 12: a message that was in hand when the process died cannot kill it again and again.

The daemon here is a real `vmd daemon` process with a planted bug (tests/support/
poison_daemon.py): it SIGKILLs itself on a request that holds "poison". Each death leaves
the request unacked, so the broker delivers it again to the next process, marked
redelivered. The daemon counts those redeliveries in its store before handling them
(vmd.daemon.poison): the third one (past `REDELIVERY_LIMIT` = 2) is not handled but
answered 500 and dead-lettered with `x-vmd-error: delivery limit exceeded (...)`, and that
process lives on and answers the next request. Without the count the poison is delivered
forever and every process dies (this test then fails at "the daemon died again").
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from support.amqp import message_count_settles

from vmd.bus.topology import COMMANDS_QUEUE, DEAD_QUEUE
from vmd.daemon.poison import REDELIVERY_LIMIT
from vmd.model import Reply

from .harness import RawRequester

ROOT = Path(__file__).resolve().parents[2]
POISONED = ROOT / "tests" / "support" / "poison_daemon.py"
LIST = {"method": "GET", "path": "/vm/status"}
POISON = {"method": "GET", "path": "/vm/status", "data": {"poison": True}}


class Daemons:
    """Starts `poison_daemon.py daemon -c <config>` processes, one at a time."""

    def __init__(self, config: Path, logs: Path) -> None:
        self.config = config
        self.logs = logs
        self.proc: asyncio.subprocess.Process | None = None
        self.started = 0

    async def start(self) -> asyncio.subprocess.Process:
        self.started += 1
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
        with (self.logs / f"daemon-{self.started}.log").open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(POISONED), "daemon", "-c", str(self.config),
                env=env, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL)
        return self.proc

    async def ready(self, timeout: float = 60.0) -> None:
        """Until this process logged `ready` (its topology is declared)."""
        assert self.proc is not None
        log = self.logs / f"daemon-{self.started}.log"
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while b'"ready"' not in log.read_bytes():
            assert self.proc.returncode is None, log.read_text()
            assert loop.time() < end, "the daemon did not start"
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@pytest.fixture
async def daemons(write_config: Callable[..., Path], tmp_path: Path) -> AsyncIterator[Daemons]:
    d = Daemons(write_config(log_level="info"), tmp_path)
    yield d
    await d.stop()


async def _answered(requester: RawRequester, cid: str, proc: asyncio.subprocess.Process,
                    timeout: float = 60.0) -> bool:
    """True once `cid` has a reply; False if the process died first."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not requester.replies.get(cid):
        if proc.returncode is not None:
            return False
        assert loop.time() < end, f"no reply to {cid} and the daemon still runs"
        await asyncio.sleep(0.05)
    return True


async def test_a_message_that_kills_the_daemon_is_dead_lettered_after_the_limit(
    daemons: Daemons, raw: Callable[..., Any], amqp_channel: aio_pika.abc.AbstractChannel,
) -> None:
    requester: RawRequester = await raw("admin")
    proc = await daemons.start()
    await daemons.ready()
    ready = await requester.send(LIST)
    assert await _answered(requester, ready, proc), "the daemon did not start"

    poison = await requester.send(POISON, message_id="m-poison")
    deaths = 0
    while not await _answered(requester, poison, proc):
        assert proc.returncode == -signal.SIGKILL, "the daemon died of something else"
        deaths += 1
        assert deaths <= REDELIVERY_LIMIT + 1, "the daemon died again: no delivery limit"
        proc = await daemons.start()
    # Its delivery and REDELIVERY_LIMIT redeliveries killed a process each; the next is refused.
    assert deaths == REDELIVERY_LIMIT + 1
    assert await requester.replies_for(poison) == [Reply(500, {"detail": "Internal error"})]

    assert await message_count_settles(amqp_channel, DEAD_QUEUE, 1) == 1
    queue = await amqp_channel.get_queue(DEAD_QUEUE)
    dead = await queue.get(no_ack=True)
    assert dead is not None
    assert dead.message_id == "m-poison"
    assert str(dead.headers["x-vmd-error"]) == (
        f"delivery limit exceeded (redelivered {REDELIVERY_LIMIT + 1} times, "
        f"limit {REDELIVERY_LIMIT})")
    assert await message_count_settles(amqp_channel, COMMANDS_QUEUE, 0) == 0

    # The process that refused it lives on and answers.
    after = await requester.send(LIST)
    assert await _answered(requester, after, proc)
    assert (await requester.replies_for(after))[0].code == 200
    assert proc.returncode is None
