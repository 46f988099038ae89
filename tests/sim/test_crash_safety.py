"""A vmadm process SIGKILLed in the middle of writing a change leaves no half-applied node.

One change touches several files (VM record, schedule, journal); callers kill vmadm at any
time (a timeout, an agent restarting `vmadm events`). The next process that takes the lock
finishes the change (vmd.sim.store.commit/recover). Each test runs a real `vmd-vmadm stop`
in a child process whose file writes are instrumented to SIGKILL it at a chosen point.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from .conftest import Node

# Runs `vmadm stop <uuid>` with a write hook that SIGKILLs the process at the chosen point
# of its first commit: "record" (after the VM record's write), "journal" (after the
# journal's append, before commit.json is removed).
_CHILD = """
import os, signal, sys
from vmd.sim import store
point, uuid = sys.argv[1], sys.argv[2]
write_json, append_lines = store.write_json, store.append_lines

def kill():
    os.kill(os.getpid(), signal.SIGKILL)

def hooked_write(path, value):
    write_json(path, value)
    if point == "record" and "/vms/" in path and path.endswith(uuid + ".json"):
        kill()

def hooked_append(path, lines):
    append_lines(path, lines)
    if point == "journal" and path.endswith("events.jsonl"):
        kill()

store.write_json, store.append_lines = hooked_write, hooked_append
from vmd.sim.vmadm import main
sys.exit(main(["stop", uuid]))
"""


def _killed_stop(node: Node, point: str, uuid: str) -> None:
    done = subprocess.run([sys.executable, "-c", _CHILD, point, uuid], env=node.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr


def _autoboot_events(node: Node, uuid: str) -> list[dict[str, object]]:
    return [ev for ev in node.journal() if ev["uuid"] == uuid and ev["type"] == "modify"
            and any(c["path"] == ["autoboot"] for c in ev["changes"])]


@pytest.mark.parametrize("point", ["record", "journal"])
def test_a_change_cut_by_sigkill_is_finished_by_the_next_process(node: Node, point: str) -> None:
    uuid = node.create("joyent", "running")
    _killed_stop(node, point, uuid)
    # The kill left the change on disk in commit.json, half applied.
    assert (node.root / "commit.json").exists()
    vm = node.get(uuid)  # any vmadm call takes the lock and finishes it first
    assert not (node.root / "commit.json").exists()
    assert vm["autoboot"] is False
    # Its event is in the journal exactly once, whole (the halt that follows may add more).
    events = _autoboot_events(node, uuid)
    assert len(events) == 1, events
    seqs = [ev["seq"] for ev in node.journal()]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_a_partial_journal_append_is_cut_back_and_rewritten(node: Node) -> None:
    uuid = node.create("joyent", "running")
    journal = node.root / "events.jsonl"
    size = journal.stat().st_size
    _killed_stop(node, "journal", uuid)
    whole = journal.read_bytes()
    # As if the kill had come in the middle of the append: half a line on disk.
    journal.write_bytes(whole[: size + (len(whole) - size) // 2])
    node.get(uuid)
    assert journal.read_bytes().startswith(whole)  # then the halt's events, perhaps
    assert len(_autoboot_events(node, uuid)) == 1


def test_a_stop_cut_by_sigkill_still_halts_the_zone(node: Node) -> None:
    # The bug this guards against: a zone left `shutting_down` forever because the step
    # that halts it was lost with the killed process that was writing it.
    fast = node.at_scale(0.05)
    uuid = fast.create("bhyve", "running")
    _killed_stop(fast, "record", uuid)
    fast.wait_state(uuid, "stopped")
    assert fast.get(uuid)["zone_state"] == "installed"
