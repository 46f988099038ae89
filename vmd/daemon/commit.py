"""The ordered commit pipeline: store, then events, then agent tasks, then replies, then acks.

Every decision the daemon makes (a request, a task result, an observation, a deadline, a
node status change) is taken synchronously on the event loop and changes the in-memory
world at once; its I/O effects, one `Effects` value (vmd.daemon.effects), are handed to
`Pipeline.submit`, which adds them to the current `Turn`: the only way into a turn. This
module carries the turns out, strictly in order, in two stages:

1. **write** (`run_writer`): take the current turn (everything decided since the last one:
   one event-loop turn, or more while the previous write was running; that is the group
   commit) and write its `Batch` in ONE `Store.write`, in the one writer thread
   (`ThreadPoolExecutor(max_workers=1)`: the store is never used by two threads). Reads
   the turn needs after its write (`GET /task/<id>/status` of a task only the store still
   has) run in the same call, so they see every earlier write.
2. **publish** (`run_publisher`): publish the turn's events (`status_change` with `seq`,
   `task.done`, `node.<node>.status`), its orders to agents and its replies, in that order,
   as pipelined confirmed publishes (one broker round trip per `CHUNK` messages), then ack
   (or hold) the deliveries that caused them. The next turn's write overlaps this stage;
   turns are published in the order they were written.

Hence a request is acked only after its effect is stored and its reply published
(protocol.md §2-3, docs/architecture.md rule 5), events of one VM leave in the order they were
applied, and a reply never overtakes the effect it reports.

What a turn holds is vmd.daemon.turn; the outbox that makes its publish survive a crash
(stored with the turn's state, deleted once confirmed, replayed at start-up) is
vmd.daemon.outbox.

Failures: the store write is shielded (a cancelled drain stops waiting for it, never
stops it half-way); a store error is a bug and crashes the daemon. What one request makes
is encoded when it is made or submitted (events by `Event`, orders by `agent_task`, rows
by `Batch.put_*` and replies by `reply_message` in `submit`), so a value JSON or the store
cannot hold raises there (`UNENCODABLE`) and never joins the turn: that request is answered 500
`Internal error` and dead-lettered (`Pipeline.fail`), and the rest of the turn is committed
(docs/architecture.md rule 10, docs/reliability.md). A publish that fails
(broker away: `NotConnected`, `ConnectionLost`, ...) is retried until it succeeds, because
the state it announces is already stored: events and orders may then arrive twice (events
carry `seq`; agents drop a task id they already run). A reply to a delivery that went
stale (its connection was lost) is never sent: the broker delivers the request again and
the daemon answers the redelivery from its idempotency record instead (docs/bus.md §4).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from vmd.bus import (
    AgentOrder,
    Bus,
    BusClosed,
    BusFailed,
    Delivery,
    EncodeError,
    Outgoing,
    PublishFailed,
    Unroutable,
    ack_all,
    node_tasks,
    order_message,
)
from vmd.daemon.effects import Answer, Effects, Settle, agent_task
from vmd.daemon.options import Clock
from vmd.daemon.outbox import OUTBOX_IDLE, replay_turn, store_outbox
from vmd.daemon.turn import INTERNAL_ERROR, UNENCODABLE_REASON, Turn
from vmd.fsm import task_status
from vmd.model import NodeName, Reply, Task, TaskId
from vmd.obs.logging import get_logger, log_context
from vmd.obs.metrics import DaemonMetrics
from vmd.store import Batch, OutboxMessage, RowError, Store

# The pipeline's own names, and those of the effects it is fed (vmd.daemon.effects), which
# the daemon's modules import from here.
__all__ = [
    "CHUNK", "INTERNAL_ERROR", "UNENCODABLE", "UNENCODABLE_REASON", "Answer", "Effects",
    "Pipeline", "Settle", "Turn", "agent_task",
]

log = get_logger(__name__)
T = TypeVar("T")

# What recording a request's effects raises for a value JSON or the store cannot hold: that
# request's error (`Pipeline.fail`), never the process's (docs/architecture.md rule 10).
UNENCODABLE = (EncodeError, RowError)

# Unroutable orders (no task queue for the node, although declared) are retried this many
# times, re-declaring the queues in between, then dropped: their tasks end at their deadline.
_UNROUTABLE_TRIES = 3
# Messages per confirmed publish batch: a few ms of broker work, well inside the publish
# timeout even for a full sync of many VMs (one chunk is retried, not the whole turn).
CHUNK = 500


# A message to publish: (the message, or None for a reply; the answer; is it an order).
_Item = tuple[Outgoing | None, Answer | None, bool]
_SKIP: _Item = (None, None, False)


def _write(store: Store, batch: Batch, lookups: Sequence[TaskId],
           reads: Sequence[Callable[[Store], Reply]] = ()
           ) -> tuple[list[Task | None], list[Reply]]:
    # Runs in the writer thread: one transaction, then the reads that must see it.
    store.write(batch)
    return [store.get_task(task_id) for task_id in lookups], [read(store) for read in reads]


class Pipeline:
    """Carries turns out in order (see the module docstring). One per daemon."""

    def __init__(
        self,
        *,
        store: Store,
        bus: Bus,
        executor: ThreadPoolExecutor,
        metrics: DaemonMetrics,
        clock: Clock,
        retry_delay: float,
    ) -> None:
        self._store = store
        self._bus = bus
        self._executor = executor
        self._metrics = metrics
        self._clock = clock
        self._retry_delay = retry_delay
        self.turn = Turn()
        self._wake = asyncio.Event()
        # Written turns waiting to be published; small, so a slow broker makes the next
        # write take more at once instead of queueing many turns.
        self._written: asyncio.Queue[Turn] = asyncio.Queue(maxsize=2)
        self._declared: set[str] = set()
        self.held: list[Delivery] = []
        self._delivering: asyncio.Future[None] | None = None
        self.answered = 0
        self.unsent = 0
        self._outbox_id = 0  # the last outbox id given
        self._idle: asyncio.TimerHandle | None = None

    # -- filling the current turn (event loop, synchronous) ---------------------------------

    def submit(self, fx: Effects) -> None:
        """Book one decision step's effects into the current turn (call before any await).
        The one way into a turn: rows, events and orders (`Turn.add`), then the replies,
        encoded now, then the settlements."""
        turn = self.turn
        turn.add(fx)
        if fx.answers is not None:
            for answer in fx.answers:
                self._book(answer, turn)
        if fx.settles is not None:
            turn.settles += fx.settles
        self._wake.set()

    def _book(self, answer: Answer, turn: Turn) -> None:
        code = answer.reply.code if answer.reply is not None else None
        error = turn.book(answer)
        if error is not None:
            self._log_failure(answer.correlation_id, error, reason=UNENCODABLE_REASON,
                              code=code, final=answer.delivery is None)

    def fail(self, delivery: Delivery, reply_to: str | None, error: object,
             kind: str | None = None, started: float = 0.0, *,
             reason: str = UNENCODABLE_REASON) -> None:
        """A request whose effects could not all be recorded (`UNENCODABLE`: an answer,
        event, order or row JSON or the store cannot hold; a bug where the value was made),
        or one past the delivery limit (vmd.daemon.poison): answered 500 `Internal error`,
        dead-lettered to `vmd.dead` with `x-vmd-error: <reason>`, and the rest of the turn
        goes on (docs/reliability.md, `Turn.fail`)."""
        self._log_failure(delivery.correlation_id, error, reason=reason, user=delivery.user_id,
                          message_id=delivery.message_id, queue=delivery.queue)
        self.turn.fail(delivery, reply_to, kind, started, reason)
        self._wake.set()

    def _encoded(self, answer: Answer, turn: Turn) -> None:
        # A reply read from the store after the write: encoded now (already booked).
        assert answer.reply is not None
        code = answer.reply.code
        error = turn.encode(answer)
        if error is not None:
            self._log_failure(answer.correlation_id, error, reason=UNENCODABLE_REASON,
                              code=code, final=False)

    def _log_failure(self, correlation_id: str | None, error: object, **kw: Any) -> None:
        self._metrics.internal_errors.inc()
        with log_context(correlation_id=correlation_id):
            log.error("internal error: answered 500 and dead-lettered",
                      error=str(error)[:300], **kw)

    def declared(self, nodes: Sequence[str]) -> None:
        """Nodes whose task queues the bus already declares (its start-up topology)."""
        self._declared.update(nodes)

    async def flush(self) -> None:
        """Return once everything decided before this call is stored, published and settled,
        and its outbox rows deleted (a second round writes the deletions the first booked)."""
        for _ in range(2):
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.turn.waiters.append(waiter)
            self._wake.set()
            await waiter

    def replay(self, stored: Sequence[OutboxMessage], *, due: Callable[[AgentOrder], bool]) -> int:
        """Start-up, before the first turn: publish the outbox the store still holds (stored,
        perhaps never published: the previous process died), in id order, ahead of anything
        decided now. Events go out as they were; orders are decoded and re-encoded when
        published (a fresh TTL), those `due` refuses (their task ended or is past its
        deadline: the expiry path handles it) left out. Returns how many are sent."""
        if not stored:
            return 0
        turn = replay_turn(stored, due)
        self._outbox_id = max(self._outbox_id, stored[-1].id)
        # The queue is empty (nothing was written yet): the publisher takes this turn first.
        self._written.put_nowait(turn)
        return len(turn.outgoing) + len(turn.orders)

    async def run_store(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call in the writer thread, after the writes queued before it."""
        loop = asyncio.get_running_loop()
        return await asyncio.shield(loop.run_in_executor(self._executor, fn, *args))

    # -- the two stages (long-lived tasks started by the runner) ----------------------------

    async def run_writer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            turn, self.turn = self.turn, Turn()
            self._outbox_id = store_outbox(turn, self._outbox_id, self._clock)
            tasks = [a for a in turn.lookups if a.read is None]
            lookups = [a.lookup for a in tasks if a.lookup is not None]
            reads = [a for a in turn.lookups if a.read is not None]
            readers = [r for a in reads if (r := a.read) is not None]
            # Shielded: cancelling the drain must not lose a write half-way (habit 5).
            found, answered = await asyncio.shield(loop.run_in_executor(
                self._executor, _write, self._store, turn.batch, lookups, readers))
            for answer, task in zip(tasks, found, strict=True):
                assert answer.principal is not None
                answer.reply = task_status(task, answer.principal)
                self._encoded(answer, turn)
            for answer, reply in zip(reads, answered, strict=True):
                answer.reply = reply
                self._encoded(answer, turn)
            await self._written.put(turn)

    def _published(self, turn: Turn) -> None:
        """The turn's messages are confirmed: delete its outbox rows with a later write."""
        if turn.outbox is None:
            return
        self.turn.batch.delete_outbox(*turn.outbox)
        if self._idle is None:
            self._idle = asyncio.get_running_loop().call_later(OUTBOX_IDLE, self._idle_write)

    def _idle_write(self) -> None:
        # A turn written meanwhile took the deletions already: this write is then empty.
        self._idle = None
        self._wake.set()

    async def run_publisher(self) -> None:
        while True:
            turn = await self._written.get()
            # Shielded: a cancelled publisher stops waiting; the publish and acks go on
            # (until `abandon`, the drain's deadline).
            self._delivering = asyncio.ensure_future(self._deliver(turn))
            await asyncio.shield(self._delivering)

    async def abandon(self) -> None:
        """Shutdown past the drain deadline: stop the publish in progress (its effects are
        stored; its requests, unacked, go back to their queue when the connection closes)."""
        task = self._delivering
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- publishing one turn ----------------------------------------------------------------

    async def _deliver(self, turn: Turn) -> None:
        try:
            sent = await self._publish(turn)
        except (BusClosed, BusFailed):
            return  # closed, or failed (the runner exits): unacked requests are redelivered
        self._published(turn)
        for answer in sent:
            if answer.kind is not None:
                assert answer.reply is not None
                self._metrics.request(
                    answer.kind, answer.reply.code, time.perf_counter() - answer.started
                )
        self.answered += len(sent)
        # The turn's acks at once: one multiple ack per channel where vmd.bus may (nothing
        # lower of that channel unsettled: held, being dead-lettered, not yet handled).
        plain: list[Delivery] = []
        acks = []
        for delivery, how in turn.settles:
            if how is Settle.ACK:
                reason = turn.failed.get(delivery)
                if reason is None:
                    plain.append(delivery)
                else:
                    acks.append(self._dead_letter(delivery, reason))
            else:
                self.held.append(delivery)
        if plain:
            acks.append(ack_all(plain))
        if acks:
            await asyncio.gather(*acks)
        for waiter in turn.waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _publish(self, turn: Turn) -> list[Answer]:
        """Publish the turn's events, orders and replies, in that order, as chunks of
        pipelined confirmed publishes (one round trip per chunk: usually one per turn). A
        chunk that fails is retried until confirmed (earlier chunks are confirmed); on a
        retry, replies whose request's connection was lost meanwhile are left out (their
        redelivery is answered instead). Returns the answers sent."""
        orders = turn.orders
        await self._declare([o.node for o in orders])
        now = self._clock()
        items: list[_Item] = [(m, None, False) for m in turn.outgoing]
        user = self._bus.settings.user  # orders carry it: agents run the daemon's only
        items += [(order_message(o, user_id=user, now=now), None, True) for o in orders]
        items += [(None, a, False) for a in turn.answers]
        sent: list[Answer] = []
        unroutable = 0
        i = 0
        while i < len(items):
            chunk = items[i:i + CHUNK]
            messages: list[Outgoing] = []
            answers: list[Answer] = []
            for j, (message, answer, _order) in enumerate(chunk):
                if message is not None:
                    messages.append(message)
                elif answer is None:
                    continue  # skipped: a dropped order or a reply not to send
                elif answer.delivery is not None and answer.delivery.stale:
                    self._unsent(answer)
                    items[i + j] = _SKIP
                else:
                    assert answer.message is not None  # encoded by `answer` or the writer
                    messages.append(answer.message)
                    answers.append(answer)
            try:
                await self._bus.publish_many(messages)
            except Unroutable as exc:
                # No task queue although declared (deleted behind our back): declare again,
                # and in the end send the chunk without its orders (their deadline ends them).
                unroutable += 1
                nodes = {o.node for o in orders}
                self._declared.difference_update(nodes)
                await self._declare(sorted(nodes))
                if unroutable >= _UNROUTABLE_TRIES:
                    log.error("orders dropped: a node's task queue is missing",
                              error=str(exc), nodes=sorted(nodes))
                    items[i:i + len(chunk)] = [
                        _SKIP if it[2] else it for it in items[i:i + len(chunk)]]
                continue
            except PublishFailed as exc:
                log.warning("publish failed; retrying", error=str(exc), messages=len(messages))
                await asyncio.sleep(self._retry_delay)
                continue
            sent += answers
            i += len(chunk)
        return sent

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        failed = await delivery.dead_letter_or_requeue(reason)
        if failed is not None:
            log.warning("dead-lettering failed; requeued", error=str(failed))
            return
        self._metrics.dead_lettered.inc()

    def _unsent(self, answer: Answer) -> None:
        # Its request comes again (redelivered) and is answered from its idempotency record.
        self.unsent += 1
        log.debug("reply not sent: its request's connection was lost",
                  correlation_id=answer.correlation_id)

    async def _declare(self, nodes: Sequence[NodeName]) -> None:
        for node in nodes:
            if node not in self._declared:
                await self._bus.declare(node_tasks(node))
                self._declared.add(node)
