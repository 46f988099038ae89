"""`vmctl events`: follow VM status changes as they happen, one line each.

The default line is for a person (time of the change, VM hostname, previous → status,
cause, principal, task); `--json` prints one JSON object per line,
`{"routing_key": ..., "event": <the event's body>}`, for scripts (`| jq`). What is shown is
what the user's broker permissions let it bind (vmd.client.events): an admin sees every
VM, an owner names its owner_uuid(s) with `--owner`. `--vm` and `--task` filter.

Once bound it says so on stderr (`vmctl: following <keys>`). Ctrl-C (or SIGTERM) ends it
with exit 0 and no traceback; a lost broker connection is rebuilt with a note on stderr
(events published while it was down are not shown). A broker that cannot be reached at
start, a refused login or a refused binding end it with one line on stderr and exit 3.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import TextIO

from vmd.cli.vmctl_args import EventsInvocation
from vmd.cli.vmctl_errors import broker_error
from vmd.client import BindRefused, BusError, BusSettings, EventMessage, follow, matches

EXIT_NO_ANSWER = 3
EXIT_OUTPUT = 9
# One retry of the first connect, as vmctl's requests; later losses are retried forever.
CONNECT_ATTEMPTS = 2


def event_line(event: EventMessage) -> str:
    """`2026-12-03T14:05:01.123Z  web01.example.com  stopped → starting  cause=task
    principal=alice  task=0-...` (on one line)."""
    b = event.body
    host = b.get("hostname") or b.get("uuid") or "?"
    return (f"{b.get('status_change') or '-'}  {host}  {b.get('previous')} → {b.get('status')}"
            f"  cause={b.get('cause')}  principal={b.get('principal') or '-'}"
            f"  task={b.get('task_id') or '-'}")


def json_line(event: EventMessage) -> str:
    return json.dumps({"routing_key": event.routing_key, "event": event.body},
                      ensure_ascii=False, separators=(",", ":"))


def _note(message: str) -> None:
    print(f"vmctl: {message}", file=sys.stderr, flush=True)


async def _follow(inv: EventsInvocation, out: TextIO) -> int:
    # Ctrl-C / SIGTERM cancel this task wherever it waits (connecting, reconnecting, for the
    # next event); leaving `follow` closes the connection.
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    assert me is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, me.cancel)
    render = json_line if inv.json else event_line
    try:
        async with follow(inv.url, owners=inv.owners, notify=_note, connection_name="vmctl-events",
                          connect_attempts=CONNECT_ATTEMPTS) as events:
            _note(f"following {', '.join(events.bindings)} (Ctrl-C ends)")
            async for event in events:
                if matches(event, vm=inv.vm, task=inv.task):
                    out.write(render(event) + "\n")
                    out.flush()
    except asyncio.CancelledError:
        return 0
    except BindRefused as exc:
        hint = "" if inv.owners else " (an owner follows its own VMs: --owner <owner_uuid>)"
        _note(f"{exc}{hint}")
        return EXIT_NO_ANSWER
    except BusError as exc:
        _note(broker_error(exc, BusSettings(inv.url), inv.url_origin))
        return EXIT_NO_ANSWER
    except BrokenPipeError:
        # The reader went away (`| head`): no second failure when stdout is flushed at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OUTPUT
    return 0


def run_events(inv: EventsInvocation, out: TextIO | None = None) -> int:
    try:
        return asyncio.run(_follow(inv, out or sys.stdout))
    except KeyboardInterrupt:  # before the handler was installed
        return 0
