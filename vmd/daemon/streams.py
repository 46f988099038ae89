"""Stream mode's subscribers (protocol.md §2, header `stream`): who gets a task's final reply.

After a 201 for a task, the asker `{reply_to, correlation_id, user, message_id}` is
subscribed to the task's end; a stream retry with the same `message_id` and a GET current
that joined a pending one (vmd.fsm.power.get_current) are subscribed too. When the task
ends, each subscriber gets the final reply (vmd.daemon.core).

They are kept here, by task id, not in the task (its `params` are what the agent is sent and
what the decision reads). To survive a restart with their task, they are stored in the
task's row, under the params key `STREAMS` (the store's format is unchanged): `row` gives
the task as its row is written, `restore` takes them back out of the pending tasks loaded
at start.

At most `MAX_STREAMS` per task: each repeat would otherwise add one and rewrite the whole
task row, so repeating one request made the daemon's work grow with the square of the
repeats (found by the fault suite, docs/reliability.md). The newest repeat is the one whose
connection is most likely alive: the oldest gives way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vmd.model import Task, TaskId

# Task row params key (daemon-only, never sent to agents) under which the subscribers of a
# pending task are stored: `[{"reply_to", "correlation_id", "user", "message_id"}]`.
STREAMS = "reply_streams"
# Stream subscribers of one task (the first request, its repeats with the same message_id
# from other connections, GET currents that joined it); a repeat beyond it replaces the
# oldest, and a GET current beyond it makes a task of its own (vmd.fsm.power.get_current).
MAX_STREAMS = 8


@dataclass(frozen=True, slots=True)
class Subscriber:
    """Who asked, in stream mode, and where the final reply goes."""

    reply_to: str
    correlation_id: str | None
    user: str | None
    message_id: str | None

    def stored(self) -> dict[str, Any]:
        return {"reply_to": self.reply_to, "correlation_id": self.correlation_id,
                "user": self.user, "message_id": self.message_id}

    @classmethod
    def from_stored(cls, value: dict[str, Any]) -> Subscriber:
        return cls(value["reply_to"], value.get("correlation_id"), value.get("user"),
                   value.get("message_id"))


class Streams:
    """The subscribers of each pending task (one per daemon)."""

    __slots__ = ("_of",)

    def __init__(self) -> None:
        self._of: dict[TaskId, list[Subscriber]] = {}

    def restore(self, pending: Iterable[Task]) -> None:
        """At start: the subscribers stored in the pending tasks' rows."""
        for task in pending:
            stored = task.params.pop(STREAMS, None)
            if stored:
                self._of[task.task_id] = [Subscriber.from_stored(s) for s in stored]

    def has_room(self, task: Task) -> bool:
        """Whether a pending task takes one more stream subscriber."""
        return len(self._of.get(task.task_id, ())) < MAX_STREAMS

    def subscribe(self, task: Task, sub: Subscriber) -> bool:
        """`sub` gets the final reply of pending `task` too; False if it had it already."""
        subs = self._of.setdefault(task.task_id, [])
        if sub in subs:
            return False
        if len(subs) >= MAX_STREAMS:
            del subs[0]
        subs.append(sub)
        return True

    def of(self, task_id: TaskId) -> tuple[Subscriber, ...]:
        return tuple(self._of.get(task_id, ()))

    def ended(self, task_id: TaskId) -> list[Subscriber]:
        """The subscribers of a task that ended now (forgotten here)."""
        return self._of.pop(task_id, [])

    def row(self, task: Task) -> Task:
        """`task` as its row is written: with its subscribers in its params, if any (a
        copy; the task itself is unchanged)."""
        subs = self._of.get(task.task_id)
        if not subs:
            return task
        return dataclasses.replace(
            task, params={**task.params, STREAMS: [s.stored() for s in subs]})
