"""The durable journal of started tasks: a task is never run twice.

Why: the agent acks a task as soon as it has started it (a `vmadm stop` may run for up to
an hour, longer than RabbitMQ's 30-minute `consumer_timeout` for unacked deliveries,
docs/agent.md). A task can still come back: the agent crashed between
recording the start and the ack reaching the broker, the connection dropped meanwhile, or
the daemon re-sent it. Before vmadm runs, the task id is appended to this file and fsync'd;
a task found here is never run again (docs/agent.md says what is reported instead).

Format: JSON lines in `<state_dir>/journal-<node>.jsonl`,
`{"e": "start", "id", "action", "uuid", "t"}`, `{"e": "done", "id", "t", "outcome"}` (the
outcome that was reported, so a repeat gets the same answer) and `{"e": "drop", "id"}` (the
start was withdrawn before vmadm ran: its ack failed, the broker delivers it again).
Entries older than `retention` (24 h; every task deadline is far shorter) are forgotten;
the file is rewritten without them (write, fsync, rename, fsync the directory) at open and
whenever it holds far more lines than live entries. A torn last line (a crash mid-write)
is skipped. `journal-<node>.lock` is held with `flock` while the agent runs: a second agent
for the same node on the same host is refused.

Appends are group-committed: records waiting while a write+fsync runs (in a thread, off the
event loop) go out together in the next one, so many tasks starting at once cost one fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from vmd.model import JsonObject, OutcomeKind, TaskId, TaskOutcome

RETENTION = 24 * 3600.0
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class JournalError(Exception):
    """The journal cannot be opened or written (one line)."""


@dataclass(frozen=True, slots=True)
class Entry:
    task_id: TaskId
    action: str
    uuid: str
    started: float
    outcome: TaskOutcome | None = None


def outcome_json(o: TaskOutcome) -> JsonObject:
    return {"kind": o.kind.value, "returncode": o.returncode, "message": o.message,
            "state": o.state, "change_time": o.change_time, "definition": o.definition}


def outcome_from_json(v: Any) -> TaskOutcome:
    if not isinstance(v, dict):
        raise ValueError("outcome is not an object")
    return TaskOutcome(OutcomeKind(v["kind"]), int(v["returncode"]), str(v["message"]),
                       v.get("state"), v.get("change_time"), v.get("definition"))


def journal_path(state_dir: Path, node: str) -> Path:
    return state_dir / f"journal-{_UNSAFE.sub('_', node)}.jsonl"


class Journal:
    """`open()` once (blocking, at start), then `get`, `started`, `finished`, `dropped`."""

    def __init__(
        self,
        path: Path,
        *,
        retention: float = RETENTION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.retention = retention
        self._clock = clock
        self._entries: dict[TaskId, Entry] = {}
        self._file: IO[bytes] | None = None
        self._lock: IO[bytes] | None = None
        self._lines = 0
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.fsyncs = 0

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Create the directory if needed, take the lock, load and compact. Raises
        `JournalError`."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = self.path.with_suffix(".lock").open("ab")
        except OSError as exc:
            raise JournalError(f"journal {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise JournalError(f"journal {self.path}: locked by another vmd agent for this "
                               "node") from None
        self._lock = lock
        try:
            self._load()
            self._compact()
            self._file = self.path.open("ab")
        except OSError as exc:
            self.close()
            raise JournalError(f"journal {self.path}: {exc.strerror or exc}") from None
        except JournalError:
            self.close()
            raise

    def close(self) -> None:
        for f in (self._file, self._lock):
            if f is not None:
                f.close()
        self._file = self._lock = None

    def __len__(self) -> int:
        return len(self._entries)

    # -- reading -----------------------------------------------------------------------------

    def get(self, task_id: str) -> Entry | None:
        entry = self._entries.get(TaskId(task_id))
        if entry is None or entry.started < self._clock() - self.retention:
            return None
        return entry

    def unfinished(self) -> list[Entry]:
        """Tasks started and neither finished nor withdrawn (within the retention): at open,
        the ones the last run of the agent was running when it died."""
        cutoff = self._clock() - self.retention
        return [e for e in self._entries.values() if e.outcome is None and e.started >= cutoff]

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        for n, raw in enumerate(data.splitlines(), 1):
            try:
                self._apply(json.loads(raw))
            except (ValueError, KeyError, TypeError):
                # Only a crash mid-write leaves a bad line, and only as the last one.
                if n != len(data.splitlines()):
                    raise JournalError(f"journal {self.path}: line {n} is corrupt") from None

    def _apply(self, r: dict[str, Any]) -> None:
        task_id = TaskId(r["id"])
        if r["e"] == "start":
            self._entries[task_id] = Entry(task_id, str(r["action"]), str(r["uuid"]),
                                           float(r["t"]))
        elif r["e"] == "done":
            old = self._entries.get(task_id)
            if old is not None:
                self._entries[task_id] = Entry(old.task_id, old.action, old.uuid, old.started,
                                               outcome_from_json(r["outcome"]))
        elif r["e"] == "drop":
            self._entries.pop(task_id, None)
        else:
            raise ValueError(r["e"])

    # -- writing -----------------------------------------------------------------------------

    # Each of these changes what `get` answers at once, when called; the awaitable it
    # returns completes once the record is durable (fsync'd) and raises `JournalError`
    # when it cannot be written.

    def started(self, task_id: TaskId, action: str, uuid: str) -> Awaitable[None]:
        """Record a start."""
        return self._record({"e": "start", "id": task_id, "action": action, "uuid": uuid,
                             "t": self._clock()})

    def finished(self, task_id: TaskId, outcome: TaskOutcome) -> Awaitable[None]:
        """Record the outcome that is being reported."""
        return self._record({"e": "done", "id": task_id, "t": self._clock(),
                             "outcome": outcome_json(outcome)})

    def dropped(self, task_id: TaskId) -> Awaitable[None]:
        """Withdraw a start whose vmadm never ran (the task will be delivered again)."""
        return self._record({"e": "drop", "id": task_id})

    def _record(self, record: JsonObject) -> Awaitable[None]:
        self._apply(record)
        # A task: the record is written even if the caller never awaits it.
        return asyncio.ensure_future(self._append(record))

    async def _append(self, record: JsonObject) -> None:
        line = json.dumps(record, separators=(",", ":"), allow_nan=False).encode() + b"\n"
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((line, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="journal-writer")
        # Shielded: a caller cancelled meanwhile does not un-write the record.
        await asyncio.shield(future)

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await asyncio.to_thread(self._write, b"".join(line for line, _ in batch))
            except OSError as exc:
                error = JournalError(f"journal {self.path}: {exc.strerror or exc}")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self._lines += len(batch)
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
            if self._lines > max(1000, 4 * len(self._entries)):
                # The records are taken on the loop (the thread must not iterate a dict
                # the loop changes); appends meanwhile wait for the next turn of this loop.
                records = self._live_records()
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(self._rewrite, records)

    def _write(self, data: bytes) -> None:
        if self._file is None:
            raise OSError("journal is closed")
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.fsyncs += 1

    def _rewrite(self, records: list[JsonObject]) -> None:
        self._replace_file(records)
        if self._file is not None:
            self._file.close()
            self._file = self.path.open("ab")

    def _compact(self) -> None:
        self._replace_file(self._live_records())

    def _live_records(self) -> list[JsonObject]:
        horizon = self._clock() - self.retention
        self._entries = {k: e for k, e in self._entries.items() if e.started >= horizon}
        records: list[JsonObject] = []
        for e in self._entries.values():
            records.append({"e": "start", "id": e.task_id, "action": e.action, "uuid": e.uuid,
                            "t": e.started})
            if e.outcome is not None:
                records.append({"e": "done", "id": e.task_id, "t": e.started,
                                "outcome": outcome_json(e.outcome)})
        return records

    def _replace_file(self, records: list[JsonObject]) -> None:
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            for r in records:
                fh.write(json.dumps(r, separators=(",", ":")).encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._lines = len(records)
