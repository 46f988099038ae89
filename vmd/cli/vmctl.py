"""`vmctl`: the command-line publisher, in the manner of Danube Cloud's `es`.

`vmctl get /vm/status -order_by -hostname`, `vmctl set /vm/web01/status/stop -force`: one
request through `vmd.client.Client`, waiting for the task's end by default (stream mode,
progress dots on stderr as es prints them, then the time waited), then es's JSON object
(or es's `--csv`/`--tabulate` table) on stdout and es's exit codes. The command-line grammar
is in vmctl_args.py, where the URL comes from in vmctl_config.py, the output in
vmctl_output.py, the progress line in vmctl_progress.py, `vmctl events` (follow status
changes live) in vmctl_events.py, `vmctl completion bash` in vmctl_completion.py;
docs/protocol.md §7 is the user's description.

Everything a user can cause (a bad command line, an unreachable broker, a refused login,
vmd not running, Ctrl-C) ends with one line on stderr and an exit code, no traceback. A
broker that refuses or cannot be reached is said in those words, with where the URL came
from: `vmctl: the broker refused user alice: ACCESS_REFUSED (check VMD_URL)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

import structlog

from vmd.cli.vmctl_args import (
    EXIT_USAGE,
    Completion,
    EventsInvocation,
    Help,
    Invocation,
    UsageError,
    parse_argv,
)
from vmd.cli.vmctl_completion import bash_script
from vmd.cli.vmctl_errors import broker_error
from vmd.cli.vmctl_events import run_events
from vmd.cli.vmctl_output import exit_code, render_es, render_json, render_table
from vmd.cli.vmctl_progress import ProgressLine
from vmd.client import BusError, BusSettings, Client, Reply, RpcTimeout

EXIT_NO_ANSWER = 3
EXIT_INTERRUPTED = 5
EXIT_OUTPUT = 9
# One retry of the first connect: a user waits for a CLI, and a refused one fails at once.
CONNECT_ATTEMPTS = 2
# Seconds one connect attempt may take (less when --timeout is shorter).
CONNECT_TIMEOUT = 5.0


def _error(message: str) -> None:
    print(f"vmctl: {message}", file=sys.stderr, flush=True)


def _print(text: str) -> int:
    """Write `text` (which ends with its newline) to stdout."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`vmctl ... | head`): no traceback, and no second failure
        # when the interpreter flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OUTPUT
    return 0


def _output(inv: Invocation, reply: Reply) -> str:
    if inv.output == "table":
        table = render_table(reply, inv.path)
        if table is not None:
            return table + "\n"
    elif inv.output != "json":
        return render_es(inv.output, reply)
    return render_json(inv.method, inv.path, reply) + "\n"


def _exit_interrupted(inv: Invocation, waiter: ProgressLine) -> None:
    """Ctrl-C: print what we have and leave at once. Closing the broker connection politely
    can take long on a loaded broker; the broker notices the closed socket by itself, and the
    task goes on in vmd either way."""
    code = _interrupted(inv, waiter)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def _run(inv: Invocation, waiter: ProgressLine) -> int:
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGINT, _exit_interrupted, inv, waiter)
    settings = BusSettings(inv.url, connection_name="vmctl", connect_attempts=CONNECT_ATTEMPTS,
                           connect_timeout=min(CONNECT_TIMEOUT, inv.timeout))
    client = Client(settings, timeout=inv.timeout)
    slow = asyncio.create_task(waiter.slow_answer(), name="vmctl-slow-answer")
    try:
        async with client:
            reply = await client.request(
                inv.method,
                inv.path,
                inv.data,
                wait=inv.wait,
                message_id=inv.message_id,
                progress=waiter,
            )
    except BusError as exc:
        waiter.end_line()
        message = broker_error(exc, settings, inv.url_origin)
        if waiter.task_id is not None:
            message += f" (task {waiter.task_id} goes on: vmctl get /task/{waiter.task_id}/status)"
        elif isinstance(exc, RpcTimeout):
            # The durable command queue keeps a request nobody consumes: a vmd that is down
            # executes it when it comes back.
            message += " (is vmd running? the request stays queued and may still be executed)"
        _error(message)
        return EXIT_NO_ANSWER
    finally:
        slow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await slow
    waiter.end_line()
    return _print(_output(inv, reply)) or exit_code(reply.code)


def _interrupted(inv: Invocation, waiter: ProgressLine) -> int:
    waiter.end_line()
    if waiter.pending is not None and waiter.task_id is not None:
        # As es: the answer so far (the 201 PENDING with its task_id) is the output.
        _print(render_json(inv.method, inv.path, waiter.pending) + "\n")
        _error(
            f"interrupted; task {waiter.task_id} goes on "
            f"(vmctl get /task/{waiter.task_id}/status)"
        )
    else:
        _error("interrupted before vmd answered; the request may still be executed")
    return EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    try:
        parsed = parse_argv(sys.argv[1:] if argv is None else argv)
        if isinstance(parsed, Help):
            sys.stdout.write(parsed.text)
            return 0
        if isinstance(parsed, Completion):
            return _print(bash_script())
        BusSettings(parsed.url)  # a URL that is no AMQP URL is a usage error, not exit 3
    except UsageError as exc:
        _error(f"{exc} (vmctl --help)")
        return exc.status
    except ValueError as exc:
        _error(f"{exc} (vmctl --help)")
        return EXIT_USAGE
    _logging(parsed.debug)
    if isinstance(parsed, EventsInvocation):
        return run_events(parsed)
    waiter = ProgressLine(sys.stderr, tty=sys.stderr.isatty())
    try:
        return asyncio.run(_run(parsed, waiter))
    except KeyboardInterrupt:
        return _interrupted(parsed, waiter)


def _logging(debug: bool) -> None:
    # The bus logs through structlog, whose default prints every level on stdout (into
    # vmctl's output): its lines go to stdlib logging like the libraries' records.
    structlog.configure(
        processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
        logger_factory=structlog.stdlib.LoggerFactory(),
    )
    if debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    else:
        # The client's own errors reach the user as one line; the libraries' log records
        # (aio-pika's connect errors, the bus's reconnect warnings) would repeat them.
        logging.getLogger().addHandler(logging.NullHandler())


if __name__ == "__main__":
    sys.exit(main())
