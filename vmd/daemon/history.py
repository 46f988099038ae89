"""Answering `GET /vm/<vm>/status/history` (a vmd extension) from the store.

The decision (vmd.fsm.history) checks the request synchronously like any other: the VM as
the principal may see it (404), `limit`/`before` (400). A valid one becomes a
`HistoryQuery`: the entries are in the store only (they are never held in memory: a fleet
of 100k VMs x 100 changes would not fit), so the answer is read in the writer thread right
after the turn's write (vmd.daemon.commit, `Answer.read`), like a task only the store still
has. Reading after the write means the history shows every change decided before the
request, including those of the same turn.

A history request is not recorded for idempotency (like the list, it changes nothing).
"""

from __future__ import annotations

import functools

from vmd.bus import Delivery
from vmd.daemon.commit import Answer
from vmd.fsm import HistoryQuery, history_reply
from vmd.model import Reply
from vmd.store import Store


def read_history(store: Store, query: HistoryQuery) -> Reply:
    """The 200 answer (writer thread): the entries newest first."""
    entries = store.read_history(query.vm_uuid, query.limit, query.before)
    return history_reply(query, entries)


def history_answer(query: HistoryQuery, reply_to: str, delivery: Delivery, kind: str,
                   started: float) -> Answer:
    """The answer to a history request, its reply read from the store after the write."""
    return Answer(reply_to, delivery.correlation_id, None, delivery, kind, started,
                  read=functools.partial(read_history, query=query))
