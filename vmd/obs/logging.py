"""Structured logs for both processes: JSON lines for journald, readable text on a terminal.

Why this module exists: every line a vmd process writes (its own through structlog, and
those of aio_pika, aiormq, asyncssh and asyncio through stdlib `logging`) must have one
shape, so that `journalctl -u vmd -o cat | jq` works on all of them; and every line logged
while a request, task or VM is being handled must carry that context (`task_id`, `vm`,
`hostname`, `node`, `correlation_id`) without each call passing it. The context lives in
contextvars (`log_context`), which are per asyncio task: a binding made inside one
delivery's handler never leaks into another's, and a task created inside it inherits a copy.

Our own lines take the fast path (filtering bound logger, orjson when it is installed,
bytes straight to stdout's buffer, cached loggers); stdlib records go through
`ProcessorFormatter` with the same processors and the same keys. Both paths flush every
line, so their lines stay in order on the one stdout.

When stdout is the journal (systemd sets `$JOURNAL_STREAM` to the device:inode of the
stream socket it connects stdout to), every line starts with its syslog priority, `<3>`
error ... `<7>` debug (sd-daemon(3)); journald strips the prefix and files the line at that
priority, so `journalctl -u vmd -p warning` shows warnings and worse, library lines too.
Run by hand or into a file or a pipe, nothing is prefixed. The lines a process prints on
stderr itself (`stderr_text`: a configuration error, a failed start) and a crash's
traceback carry their priority the same way (err, crit).

A failed connect to the broker is logged once, by vmd (vmd.bus.link: what failed and when
the next attempt comes): aiormq's own "error when creating transport" line, at error level
for every attempt, is demoted to debug.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import traceback
import types
from collections.abc import Callable, Iterator
from typing import Any, Final, TextIO, cast

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor

LEVELS: Final[dict[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
FORMATS: Final = ("auto", "json", "console")

# The context keys the processes bind (docs/operations.md "Logging"); others are allowed.
CONTEXT_KEYS: Final = ("task_id", "vm", "hostname", "node", "correlation_id")

# Chatty at INFO (a line per channel and exit status): only its warnings unless debugging.
_QUIET_LIBRARIES: Final = ("asyncssh",)

# syslog(3) priorities, the `<N>` prefix journald reads (sd-daemon(3)). Keys: our `level`
# values (structlog's add_log_level: "exception" is "error", "warn" is "warning").
PRIORITIES: Final[dict[str, int]] = {
    "debug": 7, "info": 6, "notice": 5, "warning": 4, "error": 3, "critical": 2,
}

# Library lines that repeat what vmd logs itself: (logger, message start). Shown at debug.
_DUPLICATES: Final = (("aiormq.connection", "error when creating transport"),)


class _VmdHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the root handler we installed, so reconfiguring replaces only ours."""


def _orjson_dumps() -> Callable[..., bytes] | None:
    # orjson is optional (no declared dependency needs it): the fast path when present.
    try:
        import orjson
    except ImportError:
        return None
    return orjson.dumps


def journal_stream(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    """True when `stream` is the journal's stream socket (`$JOURNAL_STREAM` names it).

    The variable is inherited by children whose output goes elsewhere, so it counts only
    when its device:inode is the stream's own (systemd.exec(5), "$JOURNAL_STREAM").
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # no file descriptor (a StringIO)
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def _prefixed(text: str, level: str) -> str:
    prefix = f"<{PRIORITIES.get(level, PRIORITIES['info'])}>"
    return "\n".join(prefix + line for line in text.split("\n"))


def stderr_text(text: str, level: str = "error", *, stream: TextIO | None = None) -> str:
    """`text` for a line the process prints on stderr itself (a configuration error, a
    failed start: one line before the exit), with its syslog priority in front of each line
    when stderr is the journal, so `journalctl -p err` shows why a unit failed."""
    out = sys.stderr if stream is None else stream
    return _prefixed(text, level) if journal_stream(out) else text


def _journal_excepthook(stream: TextIO) -> None:
    """A crash's traceback (a bug) reaches the journal at priority crit, every line."""

    def hook(exc_type: type[BaseException], exc: BaseException,
             tb: types.TracebackType | None) -> None:
        text = "".join(traceback.format_exception(exc_type, exc, tb)).rstrip("\n")
        with contextlib.suppress(OSError, ValueError):
            stream.write(_prefixed(text, "critical") + "\n")
            stream.flush()

    sys.excepthook = hook


class _Prioritized:
    """Wraps the final renderer: `<N>` before every line of the rendered event."""

    def __init__(self, renderer: Processor) -> None:
        self._renderer = renderer

    def __call__(self, logger: Any, method: str, event_dict: EventDict) -> Any:
        level = event_dict.get("level", method)
        prefix = f"<{PRIORITIES.get(level, PRIORITIES['info'])}>"
        rendered = self._renderer(logger, method, event_dict)
        if isinstance(rendered, bytes):
            head = prefix.encode()
            return head + rendered.replace(b"\n", b"\n" + head)
        return prefix + str(rendered).replace("\n", "\n" + prefix)


class _Demote(logging.Filter):
    """Library lines that repeat one of ours: kept at debug, dropped above it."""

    def __init__(self, start: str, threshold: int) -> None:
        super().__init__()
        self._start = start
        self._threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self._start):
            return True
        if self._threshold > logging.DEBUG:
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def json_serializer_name(*, fast: bool = True) -> str:
    """Which JSON serializer `configure_logging(fast=fast)` uses: "orjson" or "json"."""
    return "orjson" if fast and _orjson_dumps() is not None else "json"


def configure_logging(
    level: str = "info",
    fmt: str = "auto",
    *,
    stream: TextIO | None = None,
    fast: bool = True,
    cache: bool = True,
    journal: bool | None = None,
) -> str:
    """Configure structlog and stdlib logging for this process; return "json" or "console".

    `level` and `fmt` are `[log] level` and `[log] format` of the settings. `stream` defaults
    to `sys.stdout`; "auto" picks JSON when it is not a terminal. Call it once, first thing
    in the process: with `cache=True` (production) a logger is bound to the configuration
    in force when it first logs, so later calls do not reach it. Tests that reconfigure
    pass `cache=False` (or use `structlog.testing.capture_logs`). `journal` (default:
    `journal_stream(stream)`) puts each line's syslog priority in front of it.
    """
    level = level.lower()
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}: one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: one of {', '.join(FORMATS)}")
    out = stream if stream is not None else sys.stdout
    tty = _isatty(out)
    chosen = ("console" if tty else "json") if fmt == "auto" else fmt
    threshold = LEVELS[level]

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    own: list[Processor]
    foreign: list[Processor]
    factory: Any
    if chosen == "json":
        # No locals in tracebacks: they would put secrets (the broker URL) into the journal.
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False))
        dumps = _orjson_dumps() if fast else None
        buffer = getattr(out, "buffer", None)
        text: Callable[..., str]
        if dumps is None:
            text = functools.partial(json.dumps, separators=(",", ":"))
        else:
            text = functools.partial(_decoded, dumps)
        if dumps is not None and buffer is not None:
            own = [tracebacks, structlog.processors.JSONRenderer(serializer=dumps)]
            factory = structlog.BytesLoggerFactory(file=buffer)
        else:
            own = [tracebacks, structlog.processors.JSONRenderer(serializer=text)]
            factory = structlog.WriteLoggerFactory(file=out)
        # ProcessorFormatter must end in a str; same serializer, same bytes on the line.
        foreign = [tracebacks, structlog.processors.JSONRenderer(serializer=text)]
    else:
        console = structlog.dev.ConsoleRenderer(colors=tty)
        own = [console]
        foreign = [console]
        factory = structlog.WriteLoggerFactory(file=out)
    if journal_stream(out) if journal is None else journal:
        own[-1] = _Prioritized(own[-1])
        foreign[-1] = _Prioritized(foreign[-1])
    if stream is None and journal_stream(sys.stderr):
        _journal_excepthook(sys.stderr)

    structlog.configure(
        processors=[*shared, _logger_name, *own],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=factory,
        cache_logger_on_first_use=cache,
    )

    handler = _VmdHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *foreign],
    ))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _VmdHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(threshold, logging.WARNING)
                                         if threshold > logging.DEBUG else logging.INFO)
    for name, start in _DUPLICATES:
        library = logging.getLogger(name)
        for old_filter in [f for f in library.filters if isinstance(f, _Demote)]:
            library.removeFilter(old_filter)
        library.addFilter(_Demote(start, threshold))
    return chosen


def _decoded(dumps: Callable[..., bytes], obj: Any, **kw: Any) -> str:
    return dumps(obj, **kw).decode()


def _logger_name(_: Any, __: str, event_dict: EventDict) -> EventDict:
    # get_logger() carries the name as `logger_name` (structlog's own factory takes
    # `logger=` for itself); lines show it as `logger`, like stdlib records.
    name = event_dict.pop("logger_name", None)
    if name is not None:
        event_dict["logger"] = name
    return event_dict


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-less stream is not a terminal
        return False


def get_logger(name: str, **initial: Any) -> FilteringBoundLogger:
    """A lazy logger named `name` (the `logger` key), safe to create at module level.

    It takes the configuration on first use, so modules may create it before
    `configure_logging` runs.
    """
    return cast(FilteringBoundLogger, structlog.get_logger(logger_name=name, **initial))


@contextlib.contextmanager
def log_context(
    *,
    task_id: str | None = None,
    vm: str | None = None,
    hostname: str | None = None,
    node: str | None = None,
    correlation_id: str | None = None,
    **extra: Any,
) -> Iterator[None]:
    """Bind context for every line logged inside the block (this task and tasks it creates).

    None values are not bound (so `vm=request.vm` may be unknown yet); on exit the previous
    values come back, so blocks nest (a task inside a VM inside a request).
    """
    values = dict(task_id=task_id, vm=vm, hostname=hostname, node=node,
                  correlation_id=correlation_id, **extra)
    bound = {key: value for key, value in values.items() if value is not None}
    with structlog.contextvars.bound_contextvars(**bound):
        yield


def bind_context(**values: Any) -> None:
    """Bind context for the rest of the current asyncio task (e.g. `node=` in an agent loop).

    A task started with `asyncio.create_task` runs in a copy of its creator's context, so
    this binding ends with the task and never reaches its siblings.
    """
    structlog.contextvars.bind_contextvars(**values)
