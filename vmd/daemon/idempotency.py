"""Idempotency records of answered requests (protocol.md §5), as the decision step keeps them.

Idempotency records live 24 h (protocol.md §5), so at a steady rate of requests with a
`message_id` their number is that rate times a day. Their answers are what costs memory
(~0.7-1.4 KB a record, docs/operations.md), and a repeat nearly always comes within seconds
(a client's retry after a lost connection). So a record keeps its answers in memory for
`Options.idempotency_hot_seconds` (`hot`); after that only its key and
creation time stay (`cold`, ~270 B), and the intake reads the answers of a repeat that late
from the store. A record whose task is still pending stays hot: its stream-mode final reply
is added to it when the task ends.

Bounded per principal (protocol.md §5): each principal keeps at most `max_records`
records (`[daemon] max_idempotency_records`); a new one past it evicts that principal's
oldest, from memory and from the store in the same batch. Each principal's keys are kept
oldest first in an `OrderedDict`, so an eviction is O(1) on the hot path (a plain dict whose
front keys are deleted one by one fills with deleted slots that every look at its first key
must skip, until the next resize).

Each change a record makes is added to the step's `Effects` (`records` to store, `evicted`
keys to delete), so it is written in the same batch as the request's effect.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from vmd.daemon.effects import Effects
from vmd.fsm import TaskBook
from vmd.model import Reply
from vmd.store import RETENTION, IdempotencyKey, IdempotencyRecord

# `[daemon] max_idempotency_records` (vmd.config.DaemonSettings) when none is given.
DEFAULT_MAX_RECORDS = 10_000


class Records:
    """The records in memory: `hot` (with their answers) and `cold` (key and time only)."""

    def __init__(self, restored: dict[IdempotencyKey, IdempotencyRecord], fx: Effects, *,
                 hot_seconds: float, max_records: int, evicted: Callable[[], None]) -> None:
        # Hot records, in order of creation (so `cool` and the purge look at the front only).
        self.hot = dict(sorted(restored.items(), key=lambda kv: kv[1].created))
        # Cold records: key -> creation time; the answers are in the store.
        self.cold: dict[IdempotencyKey, float] = {}
        self._hot_seconds = hot_seconds
        self._evicted = evicted  # counts an eviction (vmd_idempotency_evicted_total)
        # Each principal's record keys (hot and cold), oldest first (module docstring).
        self._max_records = max_records
        self._keys_of: dict[str, OrderedDict[str, None]] = {}
        for key in list(self.hot):
            self._admit(key, fx)  # a lowered cap applies to the restored records too

    def add_final(self, user: str | None, message_id: str | None, final: Reply,
                   fx: Effects) -> None:
        """Stream mode: the idempotency record keeps the final reply too (for a retry)."""
        if not user or not message_id:
            return
        record = self.hot.get((user, message_id))
        if record is None or len(record.replies) > 1:
            return
        record = IdempotencyRecord(user, message_id, (record.replies[0], final), record.created)
        self.hot[user, message_id] = record
        fx.record(record)

    def remember(self, record: IdempotencyRecord, fx: Effects) -> None:
        """A request answered for the first time (or a record read back from the store and
        completed): keep its answers for 24 h (same batch), in memory while hot. A new
        record past the principal's cap evicts its oldest (module docstring)."""
        key = (record.user, record.message_id)
        known = key in self.hot or self.cold.pop(key, None) is not None
        self.hot[key] = record
        fx.record(record)
        if not known:
            self._admit(key, fx)

    def _admit(self, key: IdempotencyKey, fx: Effects) -> None:
        user, message_id = key
        keys = self._keys_of.get(user)
        if keys is None:
            keys = self._keys_of[user] = OrderedDict()
        keys[message_id] = None
        if len(keys) > self._max_records:
            oldest, _ = keys.popitem(last=False)
            old = (user, oldest)
            if self.hot.pop(old, None) is None:
                self.cold.pop(old, None)
            fx.evict(old)
            self._evicted()

    def _unlink(self, key: IdempotencyKey) -> None:
        keys = self._keys_of.get(key[0])
        if keys is not None:
            keys.pop(key[1], None)
            if not keys:
                del self._keys_of[key[0]]

    def forget_key(self, key: IdempotencyKey) -> None:
        """A cold key the store no longer has (past 24 h): the request is new again."""
        self.cold.pop(key, None)
        self._unlink(key)

    def records_of(self, user: str) -> int:
        """How many idempotency records `user` has (hot and cold)."""
        keys = self._keys_of.get(user)
        return 0 if keys is None else len(keys)

    def cool(self, now: float, tasks: TaskBook) -> int:
        """Drop the answers of records older than the hot period from memory, keeping their
        keys (see the module docstring); those of a pending task stay. Returns how many."""
        cutoff = now - self._hot_seconds
        cooled = []
        for key, record in self.hot.items():
            if record.created >= cutoff:
                break  # in order of creation: the rest are younger
            first = record.replies[0]
            if first.code == 201:
                task = tasks.get(str(first.body.get("task_id")))
                if task is not None and not task.done:
                    continue  # its final reply is still to come
            cooled.append((key, record.created))
        for key, created in cooled:
            del self.hot[key]
            self.cold[key] = created
        return len(cooled)

    def purge(self, now: float) -> int:
        """Drop idempotency records first seen more than 24 h ago (the store purges its own).
        Both maps are in about the order of creation, so only their fronts are looked at: a
        record that cooled late (its task was pending) may stay a little longer in memory,
        and a repeat of it past 24 h finds it gone from the store (new request, as §2 says).
        A full scan of a day of keys would stall the loop for seconds at 100 requests/s."""
        cutoff = now - RETENTION
        old = []
        for key, record in self.hot.items():
            if record.created >= cutoff:
                break
            old.append(key)
        for key in old:
            del self.hot[key]
            self._unlink(key)
        old_cold = []
        for key, created in self.cold.items():
            if created >= cutoff:
                break
            old_cold.append(key)
        for key in old_cold:
            del self.cold[key]
            self._unlink(key)
        return len(old) + len(old_cold)
