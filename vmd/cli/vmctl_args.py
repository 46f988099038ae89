"""vmctl's command line: es-style `-name value` parameters plus vmctl's own `--options`.

Separate from vmctl.py because the grammar is the part users trip over, so it is one pure
function (`parse_argv`) that the tests drive as a table. The rules, after Danube Cloud's
`es` (`bin/es`, l.332-378) with the differences marked:

    vmctl [-u URL] ACTION /PATH [json::{...}] [-name [value]]... [--option ...]
    vmctl [-u URL] events [--vm VM] [--task ID] [--owner UUID]... [--json]
    vmctl completion bash

- ACTION: `get` → GET, `set`/`put` → PUT, `create`/`post` → POST, `delete` → DELETE.
- A token starting with `-` and a letter is a parameter name. The token after it is its
  value unless it is itself a name; a name followed by another name, or by nothing, is
  `true` (`-force -timeout 60` = `{"force": true, "timeout": "60"}`).
- `order_by` is the exception: the token after `-order_by` is always its value, so that a
  descending field can be written as in es's own example: `-order_by -hostname`.
- Values: `true`/`false`/`null` in any case → JSON true/false/null; `json::<json>` → the
  parsed JSON (`json::60`, `json::"-x"`, `json::{"a": 1}`); `file::<path>` → the file's
  text; anything else is sent as a string (vmd accepts `"60"` for a whole number).
- A `json::{...}` right after the path (not after a name) is the whole `data` object;
  parameters given after it are merged over it (for `set /vm/<vm>/define`).
- `--options` (vmctl's own) may appear anywhere, as es's `--json`; `-u URL` and `-h` only
  before the action (after the path every `-name` is a parameter).
- Output formats are es's: `--json` (the default), `--csv`, `--tabulate`,
  `--tabulate-<fmt>` (any format of the `tabulate` library; an unknown one exits 13, as es),
  plus vmctl's `--table`; the last one given wins, as in es.
- The URL: `-u`/`--url`, else `VMD_URL`, `VMD_URL_FILE`, the config file (vmctl_config.py).
- `events` is vmctl's own (no es counterpart): no path, only its options (`--vm`,
  `--task`, `--owner`, repeatable, `--json`), which no other action accepts.
- es differences: a token like `-1` is a value, not a name (es would read a parameter `1`);
  invalid JSON after `json::`, an unreadable `file::` and a stray value (one that follows no
  name) are usage errors (exit 11) instead of being ignored with a warning.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vmd.cli.vmctl_config import (
    DEFAULT_URL,
    URL_ENV,
    URL_FILE_ENV,
    ConfigError,
    UrlSource,
    resolve_url,
)
from vmd.cli.vmctl_output import OUTPUT_FORMATS, TABULATE_FORMATS

DEFAULT_TIMEOUT = 30.0
EXIT_USAGE = 11
EXIT_FORMAT = 13  # es's "Invalid output format"

METHODS: Mapping[str, str] = {
    "get": "GET",
    "set": "PUT",
    "put": "PUT",
    "create": "POST",
    "post": "POST",
    "delete": "DELETE",
}
# Parameters whose next token is always their value, even when it starts with `-`.
VALUE_ALWAYS = frozenset({"order_by"})
_VALUE_OPTIONS = frozenset({"url", "timeout", "message-id", "vm", "task", "owner"})
# Options of `vmctl events` only.
_EVENTS_OPTIONS = frozenset({"vm", "task", "owner"})
_FLAG_OPTIONS = frozenset({"no-wait", "debug", "help", "version"})

USAGE = f"""\
usage: vmctl [-u URL] ACTION /PATH [json::OBJECT] [-name [value]]... [OPTIONS]
       vmctl [-u URL] events [--vm VM] [--task ID] [--owner UUID]... [--json]
       vmctl completion bash

Send one request to vmd over RabbitMQ and print {{"method", "path", "status", "text"}}, as
Danube Cloud's es does; or follow VM status changes as they happen (`events`, Ctrl-C ends
it); or print a bash completion script (`completion bash`).

ACTION   get (GET) | set, put (PUT) | create, post (POST) | delete (DELETE)
/PATH    /vm/status  /vm/<vm>/status  /vm/<vm>/status/current
         /vm/<vm>/status/start|stop|reboot  /vm/<vm>/status/history (-limit, -before)
         /vm/<vm>/define  /task/<task_id>/status
-name value    a parameter (in the request's data); -name alone (or before another
               -name) means true; true/false/null are converted, json::<json> is parsed,
               file::<path> is read, anything else is a string; the value after -order_by
               is always its value: -order_by -hostname
json::OBJECT   right after the path: the whole data object (parameters merge over it)

OPTIONS
  -u, --url URL        broker URL; its user is the principal (overrides the environment)
  --timeout SECONDS    wait this long for vmd's first answer (default {DEFAULT_TIMEOUT:g})
  --no-wait            return the 201 PENDING answer instead of waiting for the task's end
  --message-id ID      idempotency key: the same ID within 24 h gets the first answer
                       again
  --debug              log the client's connection events to stderr
  -h, --help           this text
  --version            vmctl's version

OUTPUT (the last one given wins)
  --json               es's JSON object, indented by 4 (the default)
  --csv                es's CSV: the result's rows, ';'-separated, a header line from the
                       first row's keys, CRLF line ends (= --tabulate-csv)
  --tabulate           es's table of the result (the tabulate library's "simple" format)
  --tabulate-FORMAT    the same in another of tabulate's {len(TABULATE_FORMATS)} formats:
                       grid, psql, github, plain, pipe, rst, html, tsv, ...
  --table              vmctl's own table of a status list, one VM's status or a history

EVENTS OPTIONS
  --vm VM              only this VM's changes (hostname or uuid)
  --task ID            only the changes of this task
  --owner UUID         an owner binds its own owner_uuid(s) (the broker refuses others);
                       admins need none
  --json               one JSON object per line: {{"routing_key", "event"}}

ENVIRONMENT (the first one set is used; -u overrides them all)
  {URL_ENV}              the broker URL, amqp://user:password@host:port/vhost
  {URL_FILE_ENV}         a file holding the URL (first line): keeps the password out of
                       `ps` and shell history; it must be mode 0600 (or 0400)
  ~/.config/vmctl/config.toml ($XDG_CONFIG_HOME/vmctl/config.toml), mode 0600:
                       url = "amqp://user:password@host:port/vhost"
  default              {DEFAULT_URL}

Exit: 0 status < 400, 1 status 4xx, 2 status 5xx, 3 no answer (broker unreachable, login
refused, vmd not running, timeout), 5 interrupted (the task goes on), 9 output error,
11 usage or settings error, 13 unknown output format.
Examples:
  vmctl get /vm/status -order_by -hostname --table
  vmctl get /vm/status --csv | cut -d';' -f1,4
  vmctl set /vm/web01.example.com/status/stop -force -timeout 60
  vmctl get /task/0-a2327793-2600-423d-9f07/status
  vmctl get /vm/web01.example.com/status/history -limit 20 --tabulate
  vmctl events --vm web01.example.com
  source <(vmctl completion bash)
"""


class UsageError(Exception):
    """A command line vmctl cannot run: one line for the user, exit `status` (11)."""

    status = EXIT_USAGE


class FormatError(UsageError):
    """An output format es does not know (`--tabulate-nope`): exit 13, as es."""

    status = EXIT_FORMAT


@dataclass(frozen=True, slots=True)
class Completion:
    """`vmctl completion SHELL`: print that shell's completion script."""

    shell: str


@dataclass(frozen=True, slots=True)
class Invocation:
    """What to send and how: the parsed command line."""

    action: str
    method: str
    path: str
    data: dict[str, Any] = field(default_factory=dict)
    url: str = DEFAULT_URL
    timeout: float = DEFAULT_TIMEOUT
    wait: bool = True
    output: str = "json"  # json, table, csv, tabulate, tabulate-<fmt> (vmctl_output)
    debug: bool = False
    message_id: str | None = None
    # Where the URL came from (`-u`, `VMD_URL`, a file): what an error tells the user to check.
    url_origin: str = field(default=URL_ENV, compare=False)


@dataclass(frozen=True, slots=True)
class EventsInvocation:
    """`vmctl events`: follow status changes (vmd.client.events)."""

    url: str = DEFAULT_URL
    vm: str | None = None
    task: str | None = None
    owners: tuple[str, ...] = ()
    json: bool = False
    debug: bool = False
    url_origin: str = field(default=URL_ENV, compare=False)


@dataclass(frozen=True, slots=True)
class Help:
    """`-h`/`--help`/`--version`: print `text` and exit 0."""

    text: str


def is_name(token: str) -> bool:
    """Whether a token is a parameter name (`-force`), not a value (`-1`, `-`)."""
    return len(token) > 1 and token[0] == "-" and token[1].isalpha()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def convert(token: str, name: str) -> Any:
    """A parameter value as es converts it (see the module docstring)."""
    low = token.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    if low == "null":
        return None
    if token.startswith("json::"):
        try:
            return json.loads(token[6:], parse_constant=_reject_constant)
        except ValueError as exc:
            raise UsageError(f"-{name}: invalid JSON after json:: ({exc})") from None
    if token.startswith("file::"):
        try:
            with open(token[6:], encoding="utf-8") as f:
                return f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"-{name}: cannot read {token[6:]!r}: {exc}") from None
    return token


def parse_params(tokens: Sequence[str]) -> dict[str, Any]:
    """The request's data from the tokens after the path (vmctl's `--options` removed)."""
    data: dict[str, Any] = {}
    i, n = 0, len(tokens)
    if n and tokens[0].startswith("json::"):
        base = convert(tokens[0], "data")
        if not isinstance(base, dict):
            raise UsageError("json:: right after the path must be a JSON object (the data)")
        data.update(base)
        i = 1
    while i < n:
        token = tokens[i]
        if not is_name(token):
            raise UsageError(
                f"unexpected value {token!r}: a value follows a -name "
                f"(write json::\"...\" for a value starting with -)"
            )
        name = token[1:]
        following = tokens[i + 1] if i + 1 < n else None
        if following is not None and (name in VALUE_ALWAYS or not is_name(following)):
            data[name] = convert(following, name)
            i += 2
        else:
            data[name] = True
            i += 1
    return data


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise UsageError(f"--timeout: not a number of seconds: {value!r}") from None
    if not seconds > 0 or seconds == float("inf"):
        raise UsageError(f"--timeout: must be a positive number of seconds: {value!r}")
    return seconds


def _events(words: Sequence[str], options: Mapping[str, str | bool], owners: Sequence[str],
            url: UrlSource) -> EventsInvocation:
    if len(words) > 1:
        raise UsageError(f"events takes options only, not {words[1]!r}")
    output = options.get("output", "json")
    if output != "json":
        raise UsageError(f"--{output} is not an output of vmctl events (--json is)")
    for name in ("vm", "task"):
        if options.get(name) == "":
            raise UsageError(f"--{name} must not be empty")
    vm, task = options.get("vm"), options.get("task")
    return EventsInvocation(
        url=url.url, vm=None if vm is None else str(vm), task=None if task is None else str(task),
        owners=tuple(owners), json="output" in options,
        debug=bool(options.get("debug", False)), url_origin=url.origin)


def _long_option(token: str, argv: Sequence[str], i: int, options: dict[str, str | bool],
                 owners: list[str]) -> int:
    """Read one `--option` (and its value); return the index of the next token."""
    name, eq, value = token[2:].partition("=")
    if name in _VALUE_OPTIONS:
        if not eq:
            if i >= len(argv):
                raise UsageError(f"--{name} needs a value")
            value = argv[i]
            i += 1
        options[name] = value
        if name == "owner":
            owners.append(value)
    elif name in _FLAG_OPTIONS and not eq:
        options[name] = True
    elif name in OUTPUT_FORMATS and not eq:
        options["output"] = name
    elif name.startswith("tabulate-") and not eq:
        raise FormatError(f"invalid output format {token!r} (tabulate's formats: "
                          f"{', '.join(TABULATE_FORMATS)})")
    else:
        raise UsageError(f"unknown option {token!r}")
    return i


def _scan(argv: Sequence[str]) -> tuple[dict[str, str | bool], list[str], list[str]]:
    """(options, --owner values, words: ACTION, /PATH and the parameter tokens)."""
    options: dict[str, str | bool] = {}
    owners: list[str] = []  # --owner, repeatable
    words: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token.startswith("--"):
            i = _long_option(token, argv, i, options, owners)
        elif not words and token in ("-h", "-?"):
            options["help"] = True
        elif not words and token == "-u":
            if i >= len(argv):
                raise UsageError("-u needs a value (the broker URL)")
            options["url"] = argv[i]
            i += 1
        elif not words and token.startswith("-"):
            raise UsageError(f"unknown option {token!r} (parameters come after the path)")
        else:
            words.append(token)
    return options, owners, words


def _request(words: Sequence[str], options: Mapping[str, str | bool], url: UrlSource
             ) -> Invocation:
    given = sorted(_EVENTS_OPTIONS & options.keys())
    if given:
        raise UsageError(f"--{given[0]} is an option of vmctl events")
    action = words[0]
    method = METHODS.get(action)
    if method is None:
        raise UsageError(f"unknown action {action!r} (get, set, put, create, post, delete)")
    if len(words) < 2 or not words[1].startswith("/"):
        raise UsageError("missing /PATH after the action (e.g. /vm/status)")
    data = parse_params(words[2:])
    timeout = options.get("timeout")
    message_id = options.get("message-id")
    if message_id == "":
        raise UsageError("--message-id must not be empty")
    return Invocation(
        action=action,
        method=method,
        path=words[1],
        data=data,
        url=url.url,
        timeout=DEFAULT_TIMEOUT if timeout is None else _positive_seconds(str(timeout)),
        wait=not options.get("no-wait", False),
        output=str(options.get("output", "json")),
        debug=bool(options.get("debug", False)),
        message_id=None if message_id is None else str(message_id),
        url_origin=url.origin,
    )


def parse_argv(argv: Sequence[str], environ: Mapping[str, str] | None = None
               ) -> Invocation | EventsInvocation | Completion | Help:
    """The command line as an `Invocation` (or `EventsInvocation`, `Completion`, `Help`);
    `UsageError` when it is not valid."""
    env = os.environ if environ is None else environ
    options, owners, words = _scan(argv)
    if options.get("help"):
        return Help(USAGE)
    if options.get("version"):
        from vmd import __version__

        return Help(f"vmctl {__version__}\n")
    if not words:
        raise UsageError("missing ACTION and /PATH")
    if words[0] == "completion":
        if words[1:] != ["bash"]:
            raise UsageError("completion takes the shell: vmctl completion bash")
        return Completion("bash")
    try:
        url = resolve_url(str(options.get("url") or "") or None, env)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if words[0] == "events":
        return _events(words, options, owners, url)
    return _request(words, options, url)
