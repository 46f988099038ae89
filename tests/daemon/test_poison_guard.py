"""The delivery guard counts process starts, not lost connections (vmd.daemon.poison).

A message requeued and redelivered to the same process (what a lost connection does) is
counted in the store once, then recognised: however often it comes back to this process,
it is handled, never refused. Only a new process (a death) counts it again. Real broker,
real store; the requeue is a `basic.nack(requeue=True)`, which marks the next delivery
redelivered exactly as a lost connection does.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aio_pika

from vmd.bus import Bus, BusSettings, Delivery
from vmd.daemon.commit import Pipeline
from vmd.daemon.poison import REDELIVERY_LIMIT, Guard
from vmd.obs.metrics import DaemonMetrics
from vmd.store import Store

QUEUE = "vmd.test.poison-guard"


def _counts(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT count FROM redeliveries")]


async def test_redeliveries_within_one_process_are_counted_once(
    bus_settings: Callable[..., BusSettings], amqp_channel: aio_pika.abc.AbstractChannel,
    tmp_path: Path,
) -> None:
    await amqp_channel.queue_delete(QUEUE)
    await amqp_channel.declare_queue(QUEUE, auto_delete=True)
    path = tmp_path / "vmd.sqlite3"
    store = Store.open(path)
    executor = ThreadPoolExecutor(max_workers=1)
    bus = Bus(bus_settings("vmd"), topology=None)
    await bus.start()
    metrics = DaemonMetrics()
    pipeline = Pipeline(store=store, bus=bus, executor=executor, metrics=metrics,
                        clock=time.time, retry_delay=0.05)
    guard = Guard(pipeline=pipeline, store=store, clock=time.time, metrics=metrics)
    seen: list[bool] = []
    done = asyncio.Event()
    requeues = REDELIVERY_LIMIT + 3

    async def handler(delivery: Delivery) -> None:
        seen.append(delivery.redelivered)
        if len(seen) <= requeues:
            await delivery.reject(requeue=True)  # back to the queue, as after a lost connection
        else:
            await delivery.ack()
            done.set()

    try:
        await bus.consume(QUEUE, guard.wrap(handler), prefetch=1)
        await amqp_channel.default_exchange.publish(aio_pika.Message(b"{}"), QUEUE)
        await asyncio.wait_for(done.wait(), 20)
        # Handled every time, though redelivered more often than the limit.
        assert seen == [False] + [True] * requeues
        assert metrics.delivery_limit_exceeded._value.get() == 0
        assert await pipeline.run_store(lambda: _counts(path)) == [1]
    finally:
        await bus.close(drain_timeout=0.5)
        executor.shutdown(wait=True)
        store.close()
