"""The lock-free fast path: settle only when a step is due, read records, poll.

Most invocations (`get`, a poll iteration of `events` or of a blocking command) find
nothing due; they then cost one small read of schedule.json and never take the lock
or import the transaction machinery (vmd.sim.world), which keeps a `vmd-vmadm get`
close to the interpreter's own start-up time.
"""

from __future__ import annotations

import os
import time

from vmd.sim import store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from vmd.sim.env import Env

    Json = dict[str, Any]


def settle_if_due(env: Env) -> None:
    """Settle the world if (and only if) a scheduled step is due, or a change is left
    half-applied by a killed process (`commit.json`: taking the lock finishes it)."""
    unfinished = os.path.exists(env.path(store.COMMIT))
    sched = store.read_json(env.path(store.SCHEDULE), []) or []
    now = time.time()
    if unfinished or any(s["due"] <= now for s in sched):
        from vmd.sim.world import World

        with World(env) as w:
            w.settle()


def read_rec(env: Env, uuid: str) -> Json | None:
    """A VM record without the lock (whole-file renames make this consistent)."""
    rec: Json | None = store.read_json(store.vm_path(env, uuid))
    return rec


def wait_for(env: Env, uuid: str, done: Callable[[Json], bool], timeout: float | None) -> str:
    """Poll (settling) until `done(record)`: "ok", "gone" or "timeout" (simulated s)."""
    deadline = None if timeout is None else time.time() + env.seconds(timeout)
    while True:
        settle_if_due(env)
        rec = read_rec(env, uuid)
        if rec is None:
            return "gone"
        if done(rec):
            return "ok"
        if deadline is not None and time.time() >= deadline:
            return "timeout"
        time.sleep(env.poll)
