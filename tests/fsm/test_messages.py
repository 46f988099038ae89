"""Every message string of docs/fsm.md §3 / protocol.md §3, spelled here from the docs,
is the one vmd sends, and is exercised by some row of the other fsm tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmd.fsm import replies

SPEC = {
    "NOT_FOUND": "Not found",
    "VM_NOT_FOUND": "VM not found",
    "TASK_NOT_FOUND": "Task does not exist (anymore)",
    "NODE_NOT_OPERATIONAL": "Node is not operational",
    "VM_NOT_OPERATIONAL": "VM is not operational",
    "BAD_ACTION": "Bad action",
    "PERMISSION_DENIED": "You do not have permission to perform this action.",
    "FORCE_REQUIRED": "Force parameter must be used",
    "ALREADY_STARTING": "VM is already starting",
    "ALREADY_STOPPING": "VM is already stopping",
    "ALREADY_STOPPING_FORCE": "VM is already stopping; try to use force",
    "PENDING_TASKS": "VM has pending tasks",
    "NO_SHUTDOWN": "Internal VM can't be stopped",
    "UPDATE_WHILE_STOPPING": "Cannot perform update while VM is stopping",
    "UPDATE_FIRST": "VM must be updated first",
    "HAS_SNAPSHOTS": "VM has snapshots",
    "INVALID_ORDER_BY": (
        "Invalid order_by; Possible sort fields are: hostname, alias, status, status_change, uuid"
    ),
    "INVALID_BOOLEAN": "Must be a valid boolean.",
    "INVALID_INTEGER": "Enter a whole number.",
    "DEADLINE_EXCEEDED": "Task deadline exceeded",
    "SUPERSEDED": "Superseded by forced status change",
}
TEMPLATES = {
    "frozen_message": ("web01", "VM web01 is already stopped. Changing status to frozen."),
    "unfrozen_message": ("web01", "Removing frozen status for VM web01."),
    "invalid_choice": (
        "x.iso", "Select a valid choice. x.iso is not one of the available choices."
    ),
    "method_not_allowed": ("DELETE", 'Method "DELETE" not allowed.'),
}
TESTS = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py")
                  if p.name != Path(__file__).name)


@pytest.mark.parametrize(("name", "text"), [pytest.param(k, v, id=k) for k, v in SPEC.items()])
def test_constant(name: str, text: str) -> None:
    assert getattr(replies, name) == text
    assert f"replies.{name}" in TESTS or repr(text) in TESTS or f'"{text}"' in TESTS, name


@pytest.mark.parametrize(("name", "case"), [pytest.param(k, v, id=k) for k, v in TEMPLATES.items()])
def test_template(name: str, case: tuple[str, str]) -> None:
    assert getattr(replies, name)(case[0]) == case[1]
    assert f"replies.{name}" in TESTS or "not allowed." in TESTS


def test_bad_return_code() -> None:
    assert replies.bad_return_code(3, "x") == "Got bad return code (3). Error: x"
    assert "Got bad return code" in TESTS


def test_every_constant_is_known_here() -> None:
    constants = {k for k, v in vars(replies).items() if k.isupper() and isinstance(v, str)}
    # vmd's own wording; TOO_MANY_TASKS is a vmd extension (429, protocol.md §3).
    assert constants - set(SPEC) == {"CDIMAGE2_WITHOUT_CDIMAGE", "TOO_MANY_TASKS"}
