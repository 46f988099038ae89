"""Records the store hands out besides the model's own: restored fleet, idempotency keys.

They live here, not in `vmd.model`, because only the store and its callers (the daemon)
speak them: the pure core never sees an idempotency key or a restore result.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmd.model import Node, NodeName, Reply, Task, TaskId, Vm, VmUuid

# docs/fsm.md §7 ("ended tasks are kept for at least 24 hours") and protocol.md §5
# (idempotency keys are honoured for 24 h).
RETENTION = 24 * 3600.0


class StoreError(Exception):
    """A problem the operator can fix (wrong file, newer schema, unreadable path).

    Its message is one line that names the file. Internal bugs (a record that cannot be
    encoded, a constraint violated by the daemon) are not wrapped and crash loudly.
    """


class StoreUnavailable(Exception):
    """The database went away under a running store: PostgreSQL restarted, the session was
    ended (a takeover ends a frozen leader's), or the network to it failed.

    Not the operator's configuration (that is `StoreError`, exit 2, not restarted): a
    restart may cure it, so the daemon exits 1 with this one line and systemd starts it
    again (as a standby first, on PostgreSQL: docs/ha.md). The store does not reconnect by
    itself: what the daemon holds in memory may no longer match the database (another
    daemon may have taken over meanwhile), and a restart rebuilds it from the store.
    SQLite raises it never: its file does not go away under an open connection.
    """


class Fenced(Exception):
    """A write refused because this process no longer holds the right to write.

    Raised by a `Store` fence (see `Store`) inside the write transaction, which is then
    rolled back: nothing of the batch is stored. The store never raises it by itself and
    never wraps it; the caller (the daemon) must stop acting as the leader.
    """


class RowError(ValueError):
    """A record the store cannot hold: a string that is not UTF-8 (a lone surrogate) or
    holds a NUL, an integer beyond 64 bits, a NaN, a value JSON cannot encode, a primary
    key over `rows.MAX_KEY_BYTES` (a VM uuid an agent made up, say). A bug where
    the value was made; raised when the record is added to a `Batch`, so it fails the
    request that made it (the daemon answers that one 500) and never the write of a whole
    turn.
    """


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A request already answered: `(user, message_id)` and the replies sent for it.

    `replies` holds the first answer and, in stream mode, the final one once it is sent.
    `created` is when the request was first seen; the record is live for `RETENTION`
    seconds after it, whatever is appended later.
    """

    user: str
    message_id: str
    replies: tuple[Reply, ...]
    created: float


IdempotencyKey = tuple[str, str]


@dataclass(slots=True)
class Fleet:
    """Everything the daemon needs in memory after a restart.

    `tasks` holds pending tasks only (their deadlines must be re-armed); an ended task is
    fetched with `Store.get_task` when someone asks for it. `idempotency` holds the keys
    still live at the `now` given to `Store.load_fleet`.
    """

    vms: dict[VmUuid, Vm]
    nodes: dict[NodeName, Node]
    tasks: dict[TaskId, Task]
    idempotency: dict[IdempotencyKey, IdempotencyRecord]


@dataclass(frozen=True, slots=True)
class Purged:
    """How many rows one `Store.purge` call removed."""

    tasks: int
    idempotency: int
