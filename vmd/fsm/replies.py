"""Every message string of the status API and the shapes of its reply bodies.

One place for the exact texts of docs/fsm.md §3 and protocol.md §3, so that the
decision procedure, the daemon's own errors and the tests use the same constants (a typo
in a message is a protocol break the acceptance suite would catch).

Bodies (protocol.md §3): an error is `{"detail": <message>}`; a task-style answer is
`{"status": "PENDING"|"SUCCESS"|"FAILURE"|"REVOKED", "result": ..., "task_id": ...}`.
"""

from __future__ import annotations

from typing import Any

from vmd.model import Reply, Task, TaskState

NOT_FOUND = "Not found"
VM_NOT_FOUND = "VM not found"
TASK_NOT_FOUND = "Task does not exist (anymore)"
NODE_NOT_OPERATIONAL = "Node is not operational"
VM_NOT_OPERATIONAL = "VM is not operational"
BAD_ACTION = "Bad action"
PERMISSION_DENIED = "You do not have permission to perform this action."
FORCE_REQUIRED = "Force parameter must be used"
ALREADY_STARTING = "VM is already starting"
ALREADY_STOPPING = "VM is already stopping"
ALREADY_STOPPING_FORCE = "VM is already stopping; try to use force"
PENDING_TASKS = "VM has pending tasks"
NO_SHUTDOWN = "Internal VM can't be stopped"
UPDATE_WHILE_STOPPING = "Cannot perform update while VM is stopping"
UPDATE_FIRST = "VM must be updated first"
HAS_SNAPSHOTS = "VM has snapshots"
# vmd extension (429): the principal already has `[daemon] max_pending_tasks` tasks pending.
TOO_MANY_TASKS = "Too many pending tasks"
INVALID_ORDER_BY = (
    "Invalid order_by; Possible sort fields are: hostname, alias, status, status_change, uuid"
)

# Field errors (the `result` of a 400 FAILURE).
INVALID_BOOLEAN = "Must be a valid boolean."
INVALID_INTEGER = "Enter a whole number."
CDIMAGE2_WITHOUT_CDIMAGE = "Can only be used together with cdimage."

# Task results.
DEADLINE_EXCEEDED = "Task deadline exceeded"
SUPERSEDED = "Superseded by forced status change"


# Input echoed in a message is cut to this many characters. An answer is kept 24 h for
# idempotency (memory and store), so echoing a 60 KiB value in full would let any principal
# grow the daemon by 60 KiB per request (found by the fault suite's fuzzer,
# docs/reliability.md). Real ISO names and HTTP methods are far shorter.
ECHO_LIMIT = 100


def echo(value: object) -> str:
    """`value` as a message shows it: `str(value)`, cut to `ECHO_LIMIT` characters + `...`."""
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= ECHO_LIMIT else text[:ECHO_LIMIT] + "..."


def invalid_choice(value: object) -> str:
    return f"Select a valid choice. {echo(value)} is not one of the available choices."


def shared_hostname(hostname: str, uuids: list[str]) -> str:
    """409 (vmd's own): the hostname names several VMs the principal may see (protocol.md)."""
    shown = ", ".join(uuids[:5]) + (", ..." if len(uuids) > 5 else "")
    return (f"Hostname {echo(hostname)} is shared by {len(uuids)} VMs ({shown}); "
            "use the VM's uuid")


def frozen_message(hostname: str) -> str:
    return f"VM {hostname} is already stopped. Changing status to frozen."


def unfrozen_message(hostname: str) -> str:
    return f"Removing frozen status for VM {hostname}."


def bad_return_code(returncode: int, message: str) -> str:
    return f"Got bad return code ({returncode}). Error: {message}"


def method_not_allowed(method: str) -> str:
    return f'Method "{echo(method)}" not allowed.'


def error(code: int, detail: str) -> Reply:
    return Reply(code, {"detail": detail})


def pending(task_id: str) -> Reply:
    return Reply(201, {"status": "PENDING", "result": None, "task_id": task_id})


def success(result: Any, task_id: str) -> Reply:
    return Reply(200, {"status": "SUCCESS", "result": result, "task_id": task_id})


def failure(result: Any, task_id: str) -> Reply:
    return Reply(400, {"status": "FAILURE", "result": result, "task_id": task_id})


_STATE_CODE = {
    TaskState.PENDING: 201,
    TaskState.SUCCESS: 200,
    TaskState.FAILURE: 400,
    TaskState.REVOKED: 410,
}


def task_reply(task: Task) -> Reply:
    """A task's state as `GET /task/<id>/status` and the stream-mode final reply show it."""
    return Reply(
        _STATE_CODE[task.state],
        {
            "status": task.state.value,
            "result": None if task.state is TaskState.PENDING else task.result,
            "task_id": task.task_id,
        },
    )


def revoked_result(reason: str) -> dict[str, Any]:
    """The result of a REVOKED task: the reason as `message` and, like a FAILURE, `detail`."""
    return {"message": reason, "detail": reason}
