"""vmctl's output and exit codes, and the client's waiting schedule (pure parts)."""

from __future__ import annotations

import io
import json

import pytest

from vmd.cli.vmctl_output import (
    OUTPUT_FORMATS,
    TABLE_COLUMNS,
    exit_code,
    render_es,
    render_json,
    render_table,
)
from vmd.cli.vmctl_progress import ProgressLine
from vmd.client import Waiting, poll_interval, tick_interval
from vmd.model import Reply

from .responder import VMS


def test_json_is_es_shaped() -> None:
    reply = Reply(404, {"detail": "VM not found"})
    text = render_json("GET", "/vm/x/status", reply)
    assert json.loads(text) == {
        "method": "GET", "path": "/vm/x/status", "status": 404, "text": {"detail": "VM not found"},
    }
    assert list(json.loads(text)) == ["method", "path", "status", "text"]
    assert '\n    "method"' in text  # indented by 4, as es


def test_table_of_the_list() -> None:
    reply = Reply(200, {"status": "SUCCESS", "result": VMS, "task_id": "0-x"})
    table = render_table(reply)
    assert table is not None
    header, rule, *rows = table.splitlines()
    assert header.split() == list(TABLE_COLUMNS)
    assert set(rule.replace(" ", "")) == {"-"}
    assert rows[0].split() == [
        "web01.example.com", VMS[0]["uuid"], "web01", "running", "2026-11-27T05:01:02.345Z",
        "online", "1",
    ]
    # A status that never changed shows as "-", no pending task as 0.
    assert rows[1].split() == [
        "db01.example.com", VMS[1]["uuid"], "db01", "stopped", "-", "online", "0",
    ]
    # Columns line up: every column starts at the same offset in every line.
    start = header.index("uuid")
    assert all(row[start:].startswith(vm["uuid"]) for row, vm in zip(rows, VMS, strict=True))


@pytest.mark.parametrize(
    ("reply", "rows"),
    [
        pytest.param(Reply(200, {"status": "SUCCESS", "result": [], "task_id": "0-x"}), 0,
                     id="empty-list-header-only"),
        pytest.param(Reply(200, {"status": "SUCCESS", "result": VMS[1], "task_id": "0-x"}), 1,
                     id="one-vm-status"),
        pytest.param(Reply(404, {"detail": "VM not found"}), None, id="error-no-table"),
        pytest.param(Reply(200, {"status": "SUCCESS", "result": {"returncode": 0,
                                 "message": "ok"}, "task_id": "0-x"}), None, id="task-no-table"),
    ],
)
def test_table_or_none(reply: Reply, rows: int | None) -> None:
    table = render_table(reply)
    if rows is None:
        assert table is None
    else:
        assert table is not None
        assert len(table.splitlines()) == 2 + rows


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        pytest.param(200, 0, id="200"),
        pytest.param(201, 0, id="201"),
        pytest.param(399, 0, id="399"),
        pytest.param(400, 1, id="400"),
        pytest.param(404, 1, id="404"),
        pytest.param(410, 1, id="410"),
        pytest.param(499, 1, id="499"),
        pytest.param(500, 2, id="500"),
        pytest.param(503, 2, id="503"),
    ],
)
def test_exit_code(code: int, expected: int) -> None:
    assert exit_code(code) == expected


@pytest.mark.parametrize(
    ("elapsed", "interval"),
    [
        pytest.param(0.0, 1.0, id="start"),
        pytest.param(4.9, 1.0, id="first-5s"),
        pytest.param(5.0, 3.0, id="to-30s"),
        pytest.param(30.0, 6.0, id="to-60s"),
        pytest.param(60.0, 12.0, id="to-20min"),
        pytest.param(1200.0, 30.0, id="after"),
    ],
)
def test_tick_schedule_is_es_keepalive(elapsed: float, interval: float) -> None:
    assert tick_interval(elapsed) == interval


def test_poll_interval_grows_and_is_capped() -> None:
    intervals = [poll_interval(n) for n in range(3000)]
    assert intervals[0] == 0.25
    assert intervals == sorted(intervals)
    assert max(intervals) == 2.0


# -- es's --csv and --tabulate (bin/es output_csv/output_tabulate, l.136-200) ---------------

LIST = Reply(200, {"status": "SUCCESS", "result": VMS, "task_id": "0-x"})


def test_csv_of_the_list_is_es_csv() -> None:
    lines = render_es("csv", LIST).split("\r\n")
    assert lines.pop() == ""  # every row ends with CRLF, as es's csv.writer writes them
    assert lines[0] == "hostname;uuid;alias;status;status_change;node_status;tasks"
    # A dict cell is es's "key: value" join (its value as Python prints it), None is empty.
    assert lines[1] == (
        f"web01.example.com;{VMS[0]['uuid']};web01;running;2026-11-27T05:01:02.345Z;online;"
        "0-a2327793-2600-423d-9f07: {'action': 'stop', 'method': 'PUT', "
        "'time': '2026-11-27T05:01:02.345Z'}")
    assert lines[2] == f"db01.example.com;{VMS[1]['uuid']};db01;stopped;;online;"
    assert len(lines) == 3
    assert render_es("tabulate-csv", LIST) == render_es("csv", LIST)


def test_csv_quotes_a_delimiter_minimally() -> None:
    reply = Reply(200, {"status": "SUCCESS", "result": [{"a": "x;y", "b": ['p', 'q'],
                                                         "c": True, "d": 3}]})
    assert render_es("csv", reply) == 'a;b;c;d\r\n"x;y";p,q;True;3\r\n'


def test_tabulate_of_the_list() -> None:
    header, rule, first, second = render_es("tabulate", LIST).splitlines()
    assert header.split() == list(TABLE_COLUMNS)
    assert set(rule.replace(" ", "")) == {"-"}
    assert first.split()[:6] == ["web01.example.com", VMS[0]["uuid"], "web01", "running",
                                 "2026-11-27T05:01:02.345Z", "online"]
    assert second.split() == ["db01.example.com", VMS[1]["uuid"], "db01", "stopped", "online"]


def test_an_error_is_a_key_value_table() -> None:
    reply = Reply(404, {"detail": "VM not found"})
    assert render_es("tabulate", reply) == (
        "------  ------------\ndetail  VM not found\n------  ------------\n")
    assert render_es("csv", reply) == "detail;VM not found\r\n"


@pytest.mark.parametrize(
    ("reply", "text"),
    [
        pytest.param(Reply(201, {"status": "PENDING", "result": None, "task_id": "0-a"}), "None",
                     id="pending-task-result-null"),
        pytest.param(Reply(200, {"status": "SUCCESS", "result": "ok"}), "ok", id="a-string"),
        pytest.param(Reply(200, {"status": "SUCCESS", "result": []}), "", id="empty-list"),
    ],
)
def test_what_es_prints_as_is(reply: Reply, text: str) -> None:
    assert render_es("tabulate", reply) == text + "\n"
    assert render_es("csv", reply) == ("" if text == "" else text + "\n")


def test_one_vm_and_a_list_of_scalars() -> None:
    one = Reply(200, {"status": "SUCCESS", "result": {"hostname": "w", "tasks": {}}})
    assert render_es("csv", one) == "hostname;w\r\ntasks;\r\n"
    names = Reply(200, {"status": "SUCCESS", "results": ["a", "b"]})
    assert render_es("tabulate-plain", names) == "a\nb\n"


def test_other_tabulate_formats() -> None:
    grid = render_es("tabulate-grid", Reply(404, {"detail": "VM not found"}))
    assert grid.splitlines()[0].startswith("+--")
    assert render_es("tabulate-github", LIST).splitlines()[1].startswith("|--")
    assert {"csv", "tabulate", "tabulate-simple", "tabulate-psql"} <= OUTPUT_FORMATS


@pytest.mark.parametrize(
    ("tty", "ticks", "expected"),
    [
        pytest.param(False, 0, "Waiting for pending task 0-a 0.4s\n", id="no-tick"),
        pytest.param(False, 2, "Waiting for pending task 0-a .. 2.4s\n", id="two-dots"),
        pytest.param(True, 0, "Waiting for pending task 0-a \r\x1b[KWaiting for pending task "
                              "0-a 0.4s\n", id="terminal-no-tick"),
        pytest.param(True, 1, "Waiting for pending task 0-a \r\x1b[KWaiting for pending task "
                              "0-a . 1.0s\r\x1b[KWaiting for pending task 0-a . 1.4s\n",
                     id="terminal-redrawn"),
    ],
)
def test_the_waiting_line_ends_with_the_time_waited(tty: bool, ticks: int,
                                                    expected: str) -> None:
    """vmctl_progress: es's line plus the seconds waited, on a terminal redrawn at each
    tick; a fake clock, no waiting."""
    pending = Reply(201, {"status": "PENDING", "result": None, "task_id": "0-a"})
    out = io.StringIO()
    now = [100.0]
    line = ProgressLine(out, tty=tty, clock=lambda: now[0])
    line(Waiting("0-a", pending, 0.0, 0))
    for tick in range(1, ticks + 1):
        now[0] += 1.0
        line(Waiting("0-a", pending, float(tick), tick))
    now[0] += 0.4
    line.end_line()
    line.end_line()  # once only
    assert out.getvalue() == expected
