"""The outcomes the agent reports when vmadm gave none: killed, past the deadline, not run,
or unknown because the agent restarted while vmadm ran (vmd.node_agent.tasks).

Their return codes follow the shell's and ssh(1)'s conventions, so that a reader of a task
result tells them from vmadm's own codes: 137 for a vmadm the agent killed, 255 when the
outcome is unknown, the runner's timeout code for a vmadm killed at the task's deadline.
"""

from __future__ import annotations

import asyncio

from vmd.bus import AgentTask
from vmd.model import Action, OutcomeKind, TaskOutcome

from .driver.backend import Backend
from .driver.classify import TIMEOUT_RC

KILLED_RC = 137  # 128 + SIGKILL, the shell's convention for a killed command
UNKNOWN_RC = 255  # like ssh(1) for a connection lost mid-command: outcome unknown
_COMMAND = {Action.START: "start", Action.STOP: "stop", Action.REBOOT: "reboot",
            Action.CURRENT: "get"}


def command_of(task: AgentTask) -> str:
    return _COMMAND[task.action]


def killed(task: AgentTask, why: str | None) -> TaskOutcome:
    """A vmadm the agent killed (preempted, or at the end of a shutdown drain): `why`."""
    return TaskOutcome(OutcomeKind.FAILURE, KILLED_RC, why or f"vmadm {command_of(task)} killed")


def past_deadline(task: AgentTask) -> TaskOutcome:
    """A vmadm still running past the task's deadline (and its grace), killed."""
    return TaskOutcome(OutcomeKind.FAILURE, TIMEOUT_RC,
                       f"vmadm {command_of(task)} {task.hostname} did not finish "
                       "before the task's deadline and was killed")


def not_run(why: str) -> TaskOutcome:
    """A task the agent could not run (its start could not be journaled, an SSH refusal)."""
    return TaskOutcome(OutcomeKind.FAILURE, UNKNOWN_RC, why)


async def unknown(backend: Backend, task: AgentTask) -> TaskOutcome:
    """The outcome of a task this agent started before it died: unknown; the VM's
    current node state is named in the message."""
    name = task.hostname
    try:
        async with asyncio.timeout(30.0):
            now = await backend.for_task(task.task_id).current(task.uuid, hostname=name)
    except (TimeoutError, ValueError):
        now = None
    if now is not None and now.kind is OutcomeKind.SUCCESS:
        where = f"; the VM is {now.state} on the node"
    elif now is not None and now.kind is OutcomeKind.NOT_FOUND:
        where = "; the VM is not on the node"
    else:
        where = ""
    return TaskOutcome(OutcomeKind.FAILURE, UNKNOWN_RC,
                       f"vmadm {command_of(task)} {name}: outcome unknown: the vmd agent "
                       f"restarted while it ran{where}")
