"""Intake: each request from `vmd.commands` is parsed, authorised and decided on arrival.

The bus calls `Intake.handle` once per delivery, in arrival order (vmd.bus.consumer): the
edge (`_edge`, its only awaits: a dead-lettering, a cooled idempotency record read back)
parses it, then one synchronous step looks up its principal, checks its idempotency key,
applies `vmd.fsm.decide` to the world and gathers its effects (`Core.effects`), answer and
settlement in one `Effects` for `Pipeline.submit`. The reply and the ack follow once the
turn is stored and published (vmd.daemon.commit). So requests for one VM are decided in
arrival order, and the consumer's prefetch bounds how many are in hand (architecture.md 6).

Checks before the decision (protocol.md §2-3; the rules in vmd.daemon.requests), in order: a
`reply_to` that is neither Direct Reply-to, nor a server-named queue (`amq.gen-...`), nor
one of the asker's own (`<user_id>.`...) → dead-lettered to `vmd.dead` with `x-vmd-error:
reply_to not allowed`, not executed (vmd publishes answers only where the asker may read); a
body over 64 KiB, not JSON, not an object, without a string `method`/`path`, with a `data`
that is not an object, or a `message_id` over 128 characters → 400 `Malformed request:
<reason>` (dead-lettered with `x-vmd-error` when there is no `reply_to` to answer); no
`user_id` → 403 `Authentication credentials were not provided.`; a user `[auth]` does not
know → 403 `You do not have permission to perform this action.`; then `decide()` (404 `Not
found`, 405, and everything of docs/fsm.md §3; a request that would create a task while its
principal, not an admin, has `[daemon] max_pending_tasks` pending → 429 `Too many pending
tasks`).

Idempotency (protocol.md §5): the first answer of `(user_id, message_id)` is kept 24 h, in
memory and in the store, written in the same batch as the request's effect; a repeat is
answered with it (and in stream mode with the final reply too, or subscribed to the task's
end) and not executed again. Only requests that may change something are recorded (start,
stop, reboot, GET and PUT current: they make tasks; define): pure reads (the list, a VM's
status, a task's status) and unknown paths are answered afresh each time, with nothing
kept. Each principal's records are capped (vmd.daemon.idempotency). A GET current while one of the
same VM is pending joins it (vmd.fsm.power), and in stream mode is subscribed to its end
like a repeat (`MAX_STREAMS` per task).

A request of those kinds without `message_id` that is redelivered after a lost connection
is matched by `(user_id, correlation_id, body digest)` against the answers of the last few
thousand such requests of this process (vmd.daemon.memo), so a connection cut does not
run it twice.

While shutting down (docs/shutdown.md) every request is answered 503 `Service unavailable`
and held unsettled; the runner requeues it once consuming has stopped, for the next instance.
"""

from __future__ import annotations

import time

from vmd.bus import STREAM_HEADER, Delivery
from vmd.daemon.auth import Principals
from vmd.daemon.commit import Answer, Effects, Pipeline, Settle
from vmd.daemon.core import Core
from vmd.daemon.history import history_answer
from vmd.daemon.listing import Lister
from vmd.daemon.memo import Memo, MemoKey, key_of
from vmd.daemon.options import Clock
from vmd.daemon.requests import (
    MALFORMED,
    MAX_MESSAGE_ID,
    MESSAGE_ID_TOO_LONG,
    REPLY_TO_NOT_ALLOWED,
    parse_request,
    reply_to_allowed,
    request_kind,
    wants_stream,
)
from vmd.daemon.streams import MAX_STREAMS, Subscriber
from vmd.fsm import (
    Decision,
    HistoryQuery,
    Kind,
    Route,
    decide,
    is_task_id,
    route,
    task_reply,
)
from vmd.model import Principal, Reply, Request, Task, TaskId
from vmd.obs.logging import get_logger, log_context
from vmd.obs.metrics import DaemonMetrics
from vmd.obs.refusals import OncePer
from vmd.store import IdempotencyRecord, Store

log = get_logger(__name__)

# MAX_STREAMS: the bound on a task's stream subscribers (vmd.daemon.streams), named here too.
__all__ = ["DEFAULT_MAX_PENDING", "MAX_STREAMS", "RECORDED", "Intake"]

NOT_PROVIDED = Reply(403, {"detail": "Authentication credentials were not provided."})
DENIED = Reply(403, {"detail": "You do not have permission to perform this action."})
UNAVAILABLE = Reply(503, {"detail": "Service unavailable"})

# Requests recorded for idempotency: those that may change something (module docstring).
RECORDED = frozenset({Kind.ACTION, Kind.CURRENT_GET, Kind.CURRENT_PUT, Kind.DEFINE})
# `[daemon] max_pending_tasks` (vmd.config.DaemonSettings) when none is given.
DEFAULT_MAX_PENDING = 100


class _Asked:
    """One request while it is decided: where its answer goes and what it is counted as."""

    __slots__ = ("delivery", "kind", "parsed", "recalled", "reply_to", "started")

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.reply_to = delivery.reply_to or None
        self.started = time.perf_counter()  # for the request metrics
        self.kind = "other"  # the metrics kind, once the path is routed
        # From the edge: the request (or why it is malformed; None: draining), a cooled record.
        self.parsed: Request | str | None = None
        self.recalled: tuple[tuple[str, str], IdempotencyRecord | None] | None = None


class Intake:
    """The `vmd.commands` handler."""

    def __init__(
        self, *, core: Core, principals: Principals, pipeline: Pipeline, store: Store,
        metrics: DaemonMetrics, clock: Clock, debug: bool = False,
        max_pending_tasks: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self.core = core
        self.store = store
        self.world = core.world
        self.principals = principals
        self.pipeline = pipeline
        self.metrics = metrics
        self.clock = clock
        self.debug = debug
        self.max_pending_tasks = max_pending_tasks
        self._memo = Memo()
        self._dead_letter_logs = OncePer()
        self.lister = Lister(world=self.world)

    async def handle(self, delivery: Delivery) -> None:
        """Decode one request at the edge (its only awaits), then decide it in one
        synchronous step whose effects go to the pipeline when it ends."""
        if delivery.stale:
            return  # its connection is gone: the broker delivers it again, answer that one
        a = _Asked(delivery)
        if not await self._edge(a):
            return
        fx = Effects()
        try:
            self._step(a, fx)
        finally:
            # Also when the step raised (`UNENCODABLE`, vmd.daemon.poison): what it booked
            # before goes with the turn, as the 500 the guard then books for it.
            self.pipeline.submit(fx)

    async def _edge(self, a: _Asked) -> bool:
        """A request's awaits, before its step: dead-lettered if its answer may not go to its
        `reply_to` or it is malformed with none (False: dealt with); parsed; a cooled
        idempotency record read back from the store (rare). No VM is read or changed."""
        delivery, reply_to = a.delivery, a.reply_to
        if reply_to is not None and not reply_to_allowed(reply_to, delivery.user_id):
            await self._dead_letter(delivery, REPLY_TO_NOT_ALLOWED)
            return False
        if self.core.draining:
            return True  # held by the step (503)
        parsed = parse_request(delivery.body)
        if type(parsed) is not str and len(delivery.message_id or "") > MAX_MESSAGE_ID:
            parsed = MESSAGE_ID_TOO_LONG
        a.parsed = parsed
        if isinstance(parsed, str):
            if reply_to is None:
                await self._dead_letter(delivery, MALFORMED + parsed)
                return False
            return True
        key = self._cold_key(delivery, parsed)
        if key is not None:
            a.recalled = key, await self._recall(key)
        return not delivery.stale  # (stale: redelivered meanwhile, that one is answered)

    def _cold_key(self, delivery: Delivery, parsed: Request) -> tuple[str, str] | None:
        """The key of a recorded request whose record has cooled (in the store only)."""
        principal = self.principals.get(delivery.user_id) if delivery.user_id else None
        if principal is None or not delivery.message_id:
            return None
        routed = route(parsed.method, parsed.path)
        if type(routed) is not Route or routed.kind not in RECORDED:
            return None
        key = (principal.name, delivery.message_id)
        if key in self.core.idempotency or key not in self.core.cold:
            return None
        return key

    def _step(self, a: _Asked, fx: Effects) -> None:
        delivery, reply_to = a.delivery, a.reply_to
        parsed = self._accept(a, fx)
        if parsed is None:
            return
        routed = route(parsed.method, parsed.path)
        a.kind = kind = request_kind(routed)
        principal = self._principal(a, fx)
        if principal is None:
            return
        user = principal.name
        stream = reply_to is not None and wants_stream(delivery.header(STREAM_HEADER))
        message_id = delivery.message_id or None
        changes = type(routed) is Route and routed.kind in RECORDED
        record_key = memo_key = None
        if changes and message_id is not None:
            record_key = (user, message_id)
            if self._repeat(a, record_key, stream, fx):
                return
        elif changes and reply_to is not None and delivery.correlation_id:
            memo_key = key_of(user, delivery.correlation_id, delivery.body)
            if delivery.redelivered and self._from_memo(a, memo_key, fx):
                return
        if self._forgotten_task(a, routed, principal, fx):
            return
        if kind == "list" and self.lister.takes(principal):
            # Too big for one step: built in slices, answered when done (vmd.daemon.listing).
            self.lister.submit(principal, parsed.data, delivery,
                               lambda reply: self._listed(a, reply))
            return
        now = self.clock()
        busy = (not principal.admin
                and self.core.pending_tasks.get(user, 0) >= self.max_pending_tasks)
        d = decide(self.world, principal, parsed, now, routed, busy=busy,
                   join=self.core.streams.has_room if stream else None)
        if d.read is not None:
            self._read_history(a, d.read, fx)
            return
        reply = d.reply
        assert reply is not None
        if stream and reply.code == 201:
            assert reply_to is not None
            self._stream_to(d, routed, Subscriber(reply_to, delivery.correlation_id, user,
                                                  message_id), fx)
        self.core.effects(d, now, fx)
        self._keep(reply, now, record_key, memo_key, fx)
        self._done(a, reply, fx)

    def _listed(self, a: _Asked, reply: Reply) -> None:
        """A big list is built (vmd.daemon.listing): its answer, a step of its own."""
        fx = Effects()
        self._done(a, reply, fx)
        self.pipeline.submit(fx)

    def _keep(self, reply: Reply, now: float, record_key: tuple[str, str] | None,
              memo_key: MemoKey | None, fx: Effects) -> None:
        """Keep the answer of a request that may change something, for its repeats: in the
        idempotency records under its (user_id, message_id), else in the redelivery memo."""
        if record_key is not None:
            user, message_id = record_key
            self.core.remember(IdempotencyRecord(user, message_id, (reply,), now), fx)
        elif memo_key is not None:
            self._memo.put(memo_key, reply)

    def _read_history(self, a: _Asked, read: HistoryQuery, fx: Effects) -> None:
        """The power history: answered from the store after this turn's write."""
        if a.reply_to is not None:
            fx.answer(history_answer(read, a.reply_to, a.delivery, a.kind, a.started))
        fx.settle(a.delivery)

    def _principal(self, a: _Asked, fx: Effects) -> Principal | None:
        """Who asks (protocol.md §3): the principal of the message's broker-validated
        `user_id`, or None once it has been answered 403 (none given, or unknown)."""
        user = a.delivery.user_id
        if not user:
            self._done(a, NOT_PROVIDED, fx)
            return None
        principal = self.principals.get(user)
        if principal is None:
            self._done(a, DENIED, fx)
        return principal

    def _from_memo(self, a: _Asked, key: MemoKey, fx: Effects) -> bool:
        """A redelivered request without message_id: answered with what it was answered
        before this connection was cut (True), or False when the memo does not know it."""
        answer = self._memo.get(key)
        if answer is None:
            return False
        self.metrics.idempotent_replays.inc()
        self._done(a, answer, fx)
        return True

    def _forgotten_task(self, a: _Asked, routed: Route | Reply, principal: Principal,
                        fx: Effects) -> bool:
        """`GET /task/<id>/status` of a task memory no longer holds (ended and forgotten):
        answered from the store after this turn's write (True), else False."""
        if (type(routed) is not Route or routed.kind is not Kind.TASK
                or self.world.tasks.get(routed.task_id) is not None
                or not is_task_id(routed.task_id)):
            return False
        if a.reply_to is not None:
            fx.answer(Answer(
                a.reply_to, a.delivery.correlation_id, None, a.delivery, a.kind, a.started,
                lookup=TaskId(routed.task_id), principal=principal))
        fx.settle(a.delivery)
        return True

    def _accept(self, a: _Asked, fx: Effects) -> Request | None:
        """The request the edge parsed, or None when it has been dealt with here (held
        while draining, answered 400)."""
        parsed = a.parsed
        if self.core.draining or parsed is None:  # (None: draining when it arrived)
            self._hold(a, fx)
            return None
        if type(parsed) is Request:
            return parsed
        assert type(parsed) is str and a.reply_to is not None  # (else dead-lettered)
        self._done(a, Reply(400, {"detail": MALFORMED + parsed}), fx)  # kind "other"
        return None

    def _stream_to(self, d: Decision, routed: Route | Reply, sub: Subscriber,
                   fx: Effects) -> None:
        """Stream mode, a 201: `sub` gets the final reply of the task it names."""
        if d.new_task is not None:
            self.core.streams.subscribe(d.new_task, sub)  # stored with the new task's row
        elif type(routed) is Route and routed.kind is Kind.CURRENT_GET:
            # Joined a pending GET current: its end is this request's end too.
            assert d.reply is not None
            self._subscribe(self.world.tasks.get(str(d.reply.body["task_id"])), sub, fx)

    def _repeat(self, a: _Asked, key: tuple[str, str], stream: bool, fx: Effects) -> bool:
        """Answer a repeat of a recorded request from its record; False if it is new."""
        record = self.core.idempotency.get(key)
        if record is None and a.recalled is not None and a.recalled[0] == key:
            record = a.recalled[1]  # cooled: read back from the store at the edge
        if record is None:
            return False
        self._replay(a, record, stream, fx)
        return True

    async def _recall(self, key: tuple[str, str]) -> IdempotencyRecord | None:
        """A cold record, read from the store (after the writes queued before it). None if
        the store no longer has it: past 24 h, the request is new (protocol.md §5)."""
        user, message_id = key
        record = await self.pipeline.run_store(self.store.get_idempotency, user, message_id,
                                               self.clock())
        if record is None:
            self.core.forget_key(key)
        return record

    def _done(self, a: _Asked, reply: Reply, fx: Effects) -> None:
        delivery = a.delivery
        if a.reply_to is not None:
            fx.answer(Answer(a.reply_to, delivery.correlation_id, reply, delivery, a.kind,
                             a.started))
        else:
            self.metrics.request(a.kind, reply.code, time.perf_counter() - a.started)
        fx.settle(delivery)
        if self.debug:
            with log_context(correlation_id=delivery.correlation_id):
                log.debug("request", kind=a.kind, code=reply.code, user=delivery.user_id,
                          message_id=delivery.message_id)

    def _replay(self, a: _Asked, record: IdempotencyRecord, stream: bool,
                fx: Effects) -> None:
        """A repeat of an answered request: its first answer again, nothing executed."""
        self.metrics.idempotent_replays.inc()
        self._done(a, record.replies[0], fx)
        reply_to = a.reply_to
        if not stream or reply_to is None:
            return
        cid = a.delivery.correlation_id
        if len(record.replies) > 1:
            fx.answer(Answer(reply_to, cid, record.replies[1]))
            return
        first = record.replies[0]
        task = self.world.tasks.get(str(first.body.get("task_id"))) if first.code == 201 else None
        if task is None:
            return  # no task, or ended long ago: GET /task/<id>/status tells its end
        if task.done:
            final = task_reply(task)
            fx.answer(Answer(reply_to, cid, final))
            self.core.remember(IdempotencyRecord(
                record.user, record.message_id, (first, final), record.created), fx)
            return
        self._subscribe(task, Subscriber(reply_to, cid, record.user, record.message_id), fx)

    def _subscribe(self, task: Task | None, sub: Subscriber, fx: Effects) -> None:
        """Stream mode: `sub` gets the final reply of pending `task` too (at most
        `MAX_STREAMS`: vmd.daemon.streams), stored with the task's row."""
        if task is None or task.done:
            return
        streams = self.core.streams
        if streams.subscribe(task, sub):
            fx.put_task(streams.row(task))

    def _hold(self, a: _Asked, fx: Effects) -> None:
        """Shutting down: 503 now, and back to the queue once consuming has stopped."""
        if a.reply_to is not None:
            fx.answer(Answer(a.reply_to, a.delivery.correlation_id, UNAVAILABLE, a.delivery,
                             "other", a.started))
        fx.settle(a.delivery, Settle.HOLD)

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        failed = await delivery.dead_letter_or_requeue(reason)
        if failed is not None:
            log.warning("dead-lettering failed; requeued", error=str(failed))
            return
        self.metrics.dead_lettered.inc()
        suppressed = self._dead_letter_logs.admit(delivery.user_id or "<no user_id>")
        if suppressed is not None:  # once per sender and minute: a sender decides how many
            with log_context(correlation_id=delivery.correlation_id):
                log.info("request dead-lettered", reason=reason, user=delivery.user_id,
                         suppressed=suppressed)
