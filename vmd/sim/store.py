"""Files of the simulated node under $VMADM_SIM_ROOT, and who owns a scheduled step.

Layout (docs/simulator.md, How it works): `vms/<uuid>.json` (VM record), `vms/<uuid>.sim.json`
(behaviour knobs, last start options), `sim.json` (global knobs, counters),
`schedule.json` (pending timed steps), `events.jsonl` (journal), `calls.jsonl` (audit
of invocations), `lock`, and `commit.json` while a change is being applied.

Concurrency rules: every read-modify-write happens under one exclusive `flock` on
`lock`; whole files are replaced by write-then-rename, so a lock-free reader sees
either the old or the new version, never a torn one. The journal and the calls log
are append-only; a reader of the journal consumes complete lines only.

Crash safety: one change touches several files (a VM record, the schedule, the journal,
`sim.json`). A `vmadm` process can be SIGKILLed at any point (a caller's timeout, an agent
restarting its `vmadm events`), and a change applied half-way would be a node no real one
can be: a zone left `shutting_down` with the step that halts it lost, a state change with
no event. So a change is first written whole to `commit.json` (write-then-rename: the
commit point), then applied file by file, then `commit.json` is removed; whoever takes the
lock next and finds `commit.json` applies it again (`recover`). Re-applying is harmless:
whole-file replacements are idempotent and the journal is cut back to its recorded length
before the lines are appended.
"""

from __future__ import annotations

import fcntl
import json
import os
import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from vmd.sim.env import Env

SCHEDULE = "schedule.json"
SIM = "sim.json"
JOURNAL = "events.jsonl"
CALLS = "calls.jsonl"
LOCK = "lock"
COMMIT = "commit.json"


def vm_path(env: Env, uuid: str) -> str:
    return env.path("vms", uuid + ".json")


def vm_sim_path(env: Env, uuid: str) -> str:
    return env.path("vms", uuid + ".sim.json")


def read_json(path: str, default: Any = None) -> Any:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return default
    if not data:
        return default
    return json.loads(data)


def write_json(path: str, value: Any) -> None:
    """Replace `path` atomically (callers hold the lock, so one tmp name per pid suffices)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dumps(value))
    os.replace(tmp, path)


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _lines_bytes(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8")


def append_lines(path: str, lines: list[str]) -> None:
    """Append whole lines with one write on an O_APPEND descriptor."""
    if not lines:
        return
    data = _lines_bytes(lines)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        while data:
            n = os.write(fd, data)
            data = data[n:]
    finally:
        os.close(fd)


def commit(env: Env, txn: dict[str, Any]) -> None:
    """Apply one change to the files crash-safely (see the module docstring). `txn`:
    `write` {path: value}, `remove` [path], `journal` [line]. Caller holds the lock."""
    if not txn["journal"]:
        txn["journal_size"] = None
    else:
        try:
            txn["journal_size"] = os.path.getsize(env.path(JOURNAL))
        except FileNotFoundError:
            txn["journal_size"] = 0
    path = env.path(COMMIT)
    write_json(path, txn)
    _apply(env, txn)
    remove(path)


def recover(env: Env) -> None:
    """Finish a change whose process died while applying it (caller holds the lock)."""
    path = env.path(COMMIT)
    txn = read_json(path)
    if txn is None:
        return
    _apply(env, txn)
    remove(path)


def _apply(env: Env, txn: dict[str, Any]) -> None:
    for target, value in txn["write"].items():
        write_json(target, value)
    for target in txn["remove"]:
        remove(target)
    size = txn.get("journal_size")
    if size is not None:
        journal = env.path(JOURNAL)
        data_len = len(_lines_bytes(txn["journal"]))
        try:
            current = os.path.getsize(journal)
        except FileNotFoundError:
            current = 0
        if current == size + data_len:
            return  # appended before the crash
        if current != size:
            os.truncate(journal, size)  # a partial append: cut it back
        append_lines(journal, txn["journal"])


def dumps(value: Any, indent: int | None = None) -> str:
    """JSON as JavaScript's JSON.stringify(value[, null, indent]): compact unless indented,
    non-ASCII written as is, and a lone UTF-16 surrogate (a string node.js holds, e.g. in an
    alias a tenant chose) written as a `\\ud800` escape, as node does since ES2019."""
    text = json.dumps(value, ensure_ascii=False, indent=indent,
                      separators=(",", ":") if indent is None else None)
    return text if text.isascii() else _LONE.sub(_escape, text)


_LONE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


class Lock:
    """The one exclusive flock guarding every read-modify-write of the root."""

    def __init__(self, env: Env) -> None:
        self._path = env.path(LOCK)
        self._fd = -1

    def __enter__(self) -> Lock:
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        # Closing the descriptor releases the flock.
        os.close(self._fd)
        self._fd = -1


def _proc_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def owner_token(pid: int | None = None) -> dict[str, Any]:
    """Identify a process so that a recycled pid is not mistaken for the owner."""
    pid = os.getpid() if pid is None else pid
    fields = _proc_stat(pid)
    return {"pid": pid, "start": fields[19] if fields else None}


def owner_alive(owner: dict[str, Any]) -> bool:
    """True while the owning process runs (a zombie counts as gone)."""
    pid = int(owner.get("pid", 0))
    if pid <= 0:
        return False
    fields = _proc_stat(pid)
    if fields is None:
        if os.path.isdir("/proc/self"):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if fields[0] in ("Z", "X", "x"):
        return False
    start = owner.get("start")
    return start is None or fields[19] == start
