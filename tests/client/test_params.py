"""vmctl's command line (vmd/cli/vmctl_args.py): the es-style parameter rules as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vmd.cli.vmctl_args import (
    DEFAULT_TIMEOUT,
    DEFAULT_URL,
    USAGE,
    Completion,
    EventsInvocation,
    FormatError,
    Help,
    Invocation,
    UsageError,
    convert,
    parse_argv,
    parse_params,
)


@pytest.mark.parametrize(
    ("tokens", "data"),
    [
        pytest.param([], {}, id="nothing"),
        pytest.param(["-order_by", "-hostname"], {"order_by": "-hostname"},
                     id="order_by-takes-a-dash-value"),
        pytest.param(["-order_by", "-status,hostname"], {"order_by": "-status,hostname"},
                     id="order_by-list-descending-first"),
        pytest.param(["-order_by", "alias"], {"order_by": "alias"}, id="order_by-plain"),
        pytest.param(["-order_by"], {"order_by": True}, id="order_by-alone-is-true"),
        pytest.param(["-force", "-timeout", "60"], {"force": True, "timeout": "60"},
                     id="flag-before-name-is-true"),
        pytest.param(["-timeout", "60", "-force"], {"timeout": "60", "force": True},
                     id="flag-at-end-is-true"),
        pytest.param(["-force", "-hostname"], {"force": True, "hostname": True},
                     id="dash-token-after-other-name-is-a-name"),
        pytest.param(["-force", "false"], {"force": False}, id="false"),
        pytest.param(["-force", "TRUE"], {"force": True}, id="true-any-case"),
        pytest.param(["-cdimage", "Null"], {"cdimage": None}, id="null-any-case"),
        pytest.param(["-cdimage", "rescue.iso", "-cdimage_once", "false"],
                     {"cdimage": "rescue.iso", "cdimage_once": False}, id="es-example-start"),
        pytest.param(["-timeout", "json::60"], {"timeout": 60}, id="json-number"),
        pytest.param(["-timeout", "-1"], {"timeout": "-1"}, id="negative-number-is-a-value"),
        pytest.param(["-alias", 'json::"-x"'], {"alias": "-x"}, id="json-string-with-dash"),
        pytest.param(["-update_disks", 'json::[{"path": "/d0", "size": 10240}]'],
                     {"update_disks": [{"path": "/d0", "size": 10240}]}, id="json-list"),
        pytest.param(["-x", "1", "-x", "2"], {"x": "2"}, id="last-wins"),
        pytest.param(["-alias", "0"], {"alias": "0"}, id="digits-stay-strings"),
        pytest.param(['json::{"ram": 2048, "alias": "a"}'], {"ram": 2048, "alias": "a"},
                     id="json-object-is-the-data"),
        pytest.param(['json::{"ram": 2048, "alias": "a"}', "-alias", "b"],
                     {"ram": 2048, "alias": "b"}, id="params-merge-over-json-object"),
        pytest.param(["-alias", "json::"], None, id="bad-json-is-a-usage-error"),
        pytest.param(["-x", "json::NaN"], None, id="json-constants-refused"),
        pytest.param(["stray"], None, id="stray-value"),
        pytest.param(["-force", "yes", "no"], None, id="second-value"),
        pytest.param(["json::[1]"], None, id="json-data-must-be-an-object"),
        pytest.param(["-a", "1", 'json::{"b": 2}'], None, id="json-object-only-first"),
    ],
)
def test_parse_params(tokens: list[str], data: dict[str, Any] | None) -> None:
    if data is None:
        with pytest.raises(UsageError):
            parse_params(tokens)
    else:
        assert parse_params(tokens) == data


def test_file_value(tmp_path: Path) -> None:
    f = tmp_path / "v.txt"
    f.write_text("hello\n")
    assert convert(f"file::{f}", "x") == "hello\n"
    with pytest.raises(UsageError, match="cannot read"):
        convert(f"file::{tmp_path / 'nope'}", "x")


ENV = {"VMD_URL": "amqp://alice:alice@broker:5672/vmd"}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(
            ["get", "/vm/status", "-order_by", "-hostname"],
            Invocation("get", "GET", "/vm/status", {"order_by": "-hostname"}, url=ENV["VMD_URL"]),
            id="es-example-list",
        ),
        pytest.param(
            ["set", "/vm/web01.example.com/status/stop", "-force", "-timeout", "60"],
            Invocation("set", "PUT", "/vm/web01.example.com/status/stop",
                       {"force": True, "timeout": "60"}, url=ENV["VMD_URL"]),
            id="es-example-stop",
        ),
        pytest.param(
            ["put", "/vm/w/status/start", "--no-wait", "--table", "--timeout", "5"],
            Invocation("put", "PUT", "/vm/w/status/start", url=ENV["VMD_URL"], timeout=5.0,
                       wait=False, output="table"),
            id="long-options-after",
        ),
        pytest.param(
            ["--no-wait", "get", "/vm/status", "--timeout=2.5", "-order_by", "uuid"],
            Invocation("get", "GET", "/vm/status", {"order_by": "uuid"}, url=ENV["VMD_URL"],
                       timeout=2.5, wait=False),
            id="long-options-anywhere",
        ),
        pytest.param(
            ["-u", "amqp://bob:bob@h/v", "get", "/task/0-a/status"],
            Invocation("get", "GET", "/task/0-a/status", url="amqp://bob:bob@h/v"),
            id="dash-u-overrides-env",
        ),
        pytest.param(
            ["get", "/vm/status", "--url", "amqp://bob:bob@h/v", "--message-id", "m-1"],
            Invocation("get", "GET", "/vm/status", url="amqp://bob:bob@h/v", message_id="m-1"),
            id="url-and-message-id",
        ),
        pytest.param(
            ["post", "/vm/status"], Invocation("post", "POST", "/vm/status", url=ENV["VMD_URL"]),
            id="post",
        ),
        pytest.param(
            ["delete", "/vm/w/status"],
            Invocation("delete", "DELETE", "/vm/w/status", url=ENV["VMD_URL"]),
            id="delete",
        ),
        pytest.param(
            ["create", "/x"], Invocation("create", "POST", "/x", url=ENV["VMD_URL"]),
            id="create-is-post",
        ),
        pytest.param(
            ["get", "/vm/status", "--json", "--debug"],
            Invocation("get", "GET", "/vm/status", url=ENV["VMD_URL"], debug=True),
            id="json-is-the-default-format",
        ),
    ],
)
def test_parse_argv(argv: list[str], expected: Invocation) -> None:
    assert parse_argv(argv, ENV) == expected


def test_defaults_without_env() -> None:
    parsed = parse_argv(["get", "/vm/status"], {})
    assert isinstance(parsed, Invocation)
    assert parsed.url == DEFAULT_URL
    assert parsed.timeout == DEFAULT_TIMEOUT
    assert parsed.wait is True
    assert parsed.message_id is None


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["-h"], id="dash-h"),
        pytest.param(["--help"], id="help"),
        pytest.param(["get", "/vm/status", "--help"], id="help-anywhere"),
        pytest.param(["--version"], id="version"),
    ],
)
def test_help(argv: list[str]) -> None:
    parsed = parse_argv(argv, {})
    assert isinstance(parsed, Help)
    assert "vmctl" in parsed.text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param([], "missing ACTION", id="empty"),
        pytest.param(["frob", "/vm/status"], "unknown action", id="unknown-action"),
        pytest.param(["get"], "missing /PATH", id="no-path"),
        pytest.param(["get", "vm/status"], "missing /PATH", id="path-without-slash"),
        pytest.param(["get", "/vm/status", "--frob"], "unknown option", id="unknown-long"),
        pytest.param(["-x", "get", "/vm/status"], "unknown option", id="dash-before-action"),
        pytest.param(["get", "/vm/status", "--timeout"], "needs a value", id="timeout-no-value"),
        pytest.param(["get", "/vm/status", "--timeout", "soon"], "not a number",
                     id="timeout-nan"),
        pytest.param(["get", "/vm/status", "--timeout", "0"], "positive", id="timeout-zero"),
        pytest.param(["get", "/vm/status", "--table=yes"], "unknown option",
                     id="flag-with-value"),
        pytest.param(["-u"], "needs a value", id="dash-u-no-value"),
        pytest.param(["get", "/vm/status", "--message-id="], "empty", id="empty-message-id"),
        pytest.param(["get", "/vm/status", "oops"], "unexpected value", id="stray"),
    ],
)
def test_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_argv(argv, {})


@pytest.mark.parametrize(
    ("argv", "output"),
    [
        pytest.param(["get", "/vm/status"], "json", id="default-json"),
        pytest.param(["get", "/vm/status", "--csv"], "csv", id="csv"),
        pytest.param(["--tabulate", "get", "/vm/status"], "tabulate", id="tabulate-before"),
        pytest.param(["get", "/vm/status", "--tabulate-grid"], "tabulate-grid", id="tab-grid"),
        pytest.param(["get", "/vm/status", "--tabulate-csv"], "tabulate-csv", id="tab-csv"),
        pytest.param(["get", "/vm/status", "--csv", "--json"], "json", id="last-wins"),
        pytest.param(["get", "/vm/status", "--table"], "table", id="vmctl-table"),
    ],
)
def test_output_formats(argv: list[str], output: str) -> None:
    parsed = parse_argv(argv, ENV)
    assert isinstance(parsed, Invocation)
    assert parsed.output == output


def test_unknown_tabulate_format_exits_13_as_es() -> None:
    with pytest.raises(FormatError, match="invalid output format '--tabulate-nope'") as caught:
        parse_argv(["get", "/vm/status", "--tabulate-nope"], ENV)
    assert caught.value.status == 13


def test_events_take_json_only() -> None:
    parsed = parse_argv(["events", "--json"], ENV)
    assert isinstance(parsed, EventsInvocation) and parsed.json
    with pytest.raises(UsageError, match="not an output of vmctl events"):
        parse_argv(["events", "--csv"], ENV)


def test_completion_command() -> None:
    assert parse_argv(["completion", "bash"], {}) == Completion("bash")
    with pytest.raises(UsageError, match="completion bash"):
        parse_argv(["completion", "fish"], {})


def test_help_names_the_formats_and_the_environment() -> None:
    for word in ("--json", "--csv", "--tabulate", "--tabulate-FORMAT", "--version", "VMD_URL",
                 "VMD_URL_FILE", "config.toml", "0600", "completion bash"):
        assert word in USAGE, word
