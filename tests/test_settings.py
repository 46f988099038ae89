"""The settings schema (vmd.settings): mistakes an operator makes are errors, one line
each, with a suggestion for a misspelt name; explicit values are kept as written."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from vmd.settings import problems, schema, validate

PATH = Path("vmd.toml")
BROKER = '[broker]\nurl = "amqp://vmd:secret@127.0.0.1:5672/vmd"\n'
AGENTS = '[auth.agents]\n"vmd-agent-node01" = ["node01"]\n'
DAEMON = BROKER + '[daemon]\nstore = "/var/lib/vmd/vmd.sqlite3"\n' + AGENTS
AGENT = BROKER + '[agent]\nnode = "node01"\n'
SSH = AGENT + 'transport = "ssh"\n[agent.ssh]\nhost = "cn01"\nknown_hosts = "/k"\n'
API = '[api]\nbroker_url = "amqp://vmd-api:secret@127.0.0.1/vmd"\n'


def lines(text: str) -> list[str]:
    sections, found = validate(PATH, tomllib.loads(text))
    assert (sections is None) == bool(found)
    return found


def parsed(text: str) -> schema.Sections:
    sections, found = validate(PATH, tomllib.loads(text))
    assert found == []
    assert sections is not None
    return sections


def after(base: str, table: str, extra: str) -> str:
    """`base` with `extra` lines added at the end of its `[table]` (before the next one)."""
    head, sep, rest = base.partition(f"[{table}]\n")
    assert sep, table
    body, nxt, tail = rest.partition("\n[")
    return f"{head}{sep}{body}\n{extra}\n{nxt}{tail}" if nxt else f"{head}{sep}{rest}{extra}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(after(DAEMON, "daemon", "start_dealine = 10"),
                     "[daemon] start_dealine: unknown key (did you mean start_deadline?)",
                     id="misspelt-key"),
        pytest.param(DAEMON + "[daemn]\nshard = 1\n",
                     "[daemn]: unknown section (did you mean [daemon]?)", id="misspelt-section"),
        pytest.param(AGENT + '[agent.shh]\nhost = "cn01"\n',
                     "[agent.shh]: unknown table (did you mean [agent.ssh]?)",
                     id="misspelt-table"),
        pytest.param(after(AGENT, "agent", "colour = 1"), "[agent] colour: unknown key",
                     id="unknown-key-nothing-close"),
        pytest.param('url = "amqp://x"\n' + DAEMON,
                     "url: a key outside any section: keys go in a section ([broker], "
                     "[daemon], [auth], [agent], [log], [api])", id="key-outside-sections"),
    ],
)
def test_unknown_names_are_errors_with_a_suggestion(text: str, expected: str) -> None:
    assert lines(text) == [f"{PATH}: {expected}"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(SSH + "port = 70000\n",
                     "[agent.ssh] port: must be an integer from 1 to 65535 (got 70000)",
                     id="ssh-port-too-big"),
        pytest.param(SSH + "port = 0\n",
                     "[agent.ssh] port: must be an integer from 1 to 65535 (got 0)",
                     id="ssh-port-0"),
        pytest.param(after(DAEMON, "daemon", "prefetch = 0"),
                     "[daemon] prefetch: must be an integer from 1 to 65535 (got 0)",
                     id="prefetch-0"),
        pytest.param(after(DAEMON, "daemon", "prefetch = 70000"),
                     "[daemon] prefetch: must be an integer from 1 to 65535 (got 70000)",
                     id="prefetch-over-amqp-max"),
        pytest.param(after(AGENT, "agent", "max_parallel = 0"),
                     "[agent] max_parallel: must be an integer >= 1 (got 0)",
                     id="max-parallel-0"),
        pytest.param(SSH + "max_sessions = 0\n",
                     "[agent.ssh] max_sessions: must be an integer >= 1 (got 0)",
                     id="max-sessions-0"),
        pytest.param(after(DAEMON, "daemon", "heartbeat_interval = 0"),
                     "[daemon] heartbeat_interval: must be a number > 0 (got 0)",
                     id="interval-0"),
        pytest.param(after(AGENT, "agent", "poll_interval = -5"),
                     "[agent] poll_interval: must be a number > 0 (got -5)",
                     id="interval-negative"),
        pytest.param(after(DAEMON, "daemon", 'metrics = "127.0.0.1:70000"'),
                     "[daemon] metrics: must be host:port with a port from 0 to 65535 "
                     "(0: any free port) (got '127.0.0.1:70000')", id="metrics-port"),
        pytest.param(after(DAEMON, "daemon", "shard = true"),
                     "[daemon] shard: must be an integer >= 0 (got True)", id="bool-not-int"),
        pytest.param(after(DAEMON, "daemon", 'max_pending_tasks = "100"'),
                     "[daemon] max_pending_tasks: must be an integer >= 1 (got '100')",
                     id="string-not-int"),
        pytest.param(after(DAEMON, "daemon", "shard = 1.5"),
                     "[daemon] shard: must be an integer >= 0 (got 1.5)", id="float-not-int"),
        pytest.param(after(AGENT, "agent", "vmadm = []"),
                     '[agent] vmadm: must be an argument list such as ["/usr/sbin/vmadm"] '
                     "(got [])", id="empty-argv"),
        pytest.param(after(AGENT, "agent", 'vmadm = "/usr/sbin/vmadm lookup"'),
                     '[agent] vmadm: must be an argument list such as ["/usr/sbin/vmadm"] '
                     "(got '/usr/sbin/vmadm lookup')", id="argv-as-shell-line"),
        pytest.param(after(AGENT, "agent", 'transport = "tcp"'),
                     "[agent] transport: must be one of local, ssh (got 'tcp')",
                     id="transport"),
        pytest.param(SSH + 'client_keys = ["/k1", ""]\n',
                     "[agent.ssh] client_keys[1]: must be a path (a non-empty string) (got '')",
                     id="empty-path-in-list"),
        pytest.param(after(AGENT, "agent", "[agent.memory]\nowners = 0"),
                     "[agent.memory] owners: must be an integer >= 1 (got 0)",
                     id="memory-owners-0"),
        pytest.param(DAEMON + '[auth.owners]\nalice = "8a1a"\n',
                     "[auth.owners] alice: must be a list of owner uuids (got '8a1a')",
                     id="owners-not-a-list"),
        pytest.param(AGENT + '[agent.ssh]\nhost = "h"\nknown_hosts = "/k"\n',
                     "[agent.ssh]: read only with transport = "
                     '"ssh" (add it to [agent], or remove [agent.ssh])', id="ssh-unused"),
        pytest.param(after(AGENT, "agent", "ssh = 5\ntransport = 'ssh'"),
                     "[agent.ssh] must be a table", id="ssh-not-a-table"),
        pytest.param(after(DAEMON, "daemon", "start_deadline = inf"),
                     "[daemon] start_deadline: must be a number > 0 (got inf)",
                     id="inf-seconds"),
        pytest.param(after(AGENT, "agent", "[agent.memory]\nstart_seconds = nan"),
                     "[agent.memory] start_seconds: must be a number >= 0 (got nan)",
                     id="nan-seconds"),
        pytest.param(DAEMON + '[auth.owners]\n"" = ["8a1a"]\n',
                     "[auth.owners] \"\": must be a non-empty string (got '')",
                     id="empty-user-name"),
        pytest.param(DAEMON.replace("[daemon]", "[[daemon]]"), "[daemon] must be a table",
                     id="array-of-tables"),
        pytest.param(DAEMON.replace("[auth.agents]", "[auth]\nowners = 5\n[auth.agents]"),
                     "[auth.owners] must be a table", id="owners-not-a-table"),
        pytest.param(API + 'prefix = "api"\n',
                     "[api] prefix: must be \"\" or a path such as \"/api\" (no spaces) "
                     "(got 'api')", id="api-prefix"),
    ],
)
def test_types_and_ranges(text: str, expected: str) -> None:
    assert lines(text) == [f"{PATH}: {expected}"]


def test_secrets_never_appear_in_a_problem() -> None:
    text = ('[broker]\nurl = "http://vmd:hunter2hunter2@h/vmd"\n'
            '[api]\nbroker_url = "amqp-ish://vmd-api:hunter2hunter2@h/vmd"\n'
            '[api.keys]\n"hunter2 hunter2 hunter2" = "admin"\n"hunter2hunter2hunter2" = 5\n')
    found = lines(text)
    assert found == [
        f"{PATH}: [broker] url: must be an amqp:// URL",
        f"{PATH}: [api] broker_url: must be an amqp:// URL",
        f"{PATH}: [api.keys] hunt...: an API key must be at least 16 printable ASCII "
        "characters without spaces",
        f"{PATH}: [api.keys] hunt...: must be a principal (an AMQP user name)",
    ]
    assert "hunter2" not in repr(parsed(API).api)  # nor in a record's repr (logs)
    assert "secret" not in repr(parsed(BROKER + "[log]\n").broker)


def test_every_problem_of_a_file_at_once() -> None:
    text = (BROKER.replace("amqp", "http") + '[daemon]\nstore = ""\nprefetch = 0\nshard = -1\n'
            'start_dealine = 10\n[daemn]\n[agent]\nnode = "n"\nmax_parallel = 0\n'
            '[log]\nlevel = "loud"\n')
    found = lines(text)
    assert [line.split(": ", 2)[1] for line in found] == [
        "[broker] url", "[daemon] store", "[daemon] shard", "[daemon] prefetch",
        "[daemon] start_dealine", "[agent] max_parallel", "[log] level", "[daemn]",
        "[auth.agents] missing (required with [daemon]"]
    assert all("\n" not in line for line in found)


@pytest.mark.parametrize(
    ("text", "where", "value"),
    [
        pytest.param(after(DAEMON, "daemon", "history_keep = 0"), ("daemon", "history_keep"),
                     0, id="history-keep-0-keeps-none"),
        pytest.param(after(DAEMON, "daemon", "shard = 0"), ("daemon", "shard"), 0, id="shard-0"),
        pytest.param(after(DAEMON, "daemon", "prefetch = 1"), ("daemon", "prefetch"), 1,
                     id="prefetch-1"),
        pytest.param(after(AGENT, "agent", "max_parallel = 1"), ("agent", "max_parallel"), 1,
                     id="max-parallel-1"),
        pytest.param(after(AGENT, "agent", "[agent.memory]\nvms = 0\nisos = []"),
                     ("agent", "memory"), schema.MemorySettings(vms=0, isos=()),
                     id="memory-zeros"),
        pytest.param(after(BROKER, "broker", "connect_attempts = 0"),
                     ("broker", "connect_attempts"), 0, id="attempts-0-means-forever"),
        pytest.param(API + 'prefix = ""\n', ("api", "prefix"), "", id="api-prefix-empty"),
        pytest.param(API + 'prefix = "/v1/"\n', ("api", "prefix"), "/v1", id="api-prefix-slash"),
        pytest.param(after(DAEMON, "daemon", 'metrics = "127.0.0.1:0"'),
                     ("daemon", "metrics"), "127.0.0.1:0", id="metrics-any-port"),
        pytest.param('[log]\nlevel = "WARNING"\n', ("log", "level"), "warning", id="log-case"),
        pytest.param(after(DAEMON, "daemon", "start_deadline = 12"),
                     ("daemon", "start_deadline"), 12.0, id="int-for-seconds"),
    ],
)
def test_explicit_values_are_kept(text: str, where: tuple[str, str], value: Any) -> None:
    """No `value or default`: a valid value is what the process gets, 0 included."""
    section = getattr(parsed(text), where[0])
    assert getattr(section, where[1]) == value
    assert type(getattr(section, where[1])) is type(value)


def test_defaults_and_types_of_a_minimal_file() -> None:
    s = parsed(SSH.replace('known_hosts = "/k"', 'known_hosts = "/k"\nclient_keys = ["/a"]'))
    assert s.agent is not None and s.agent.ssh is not None
    assert s.agent == schema.AgentSettings(node="node01", transport="ssh", ssh=s.agent.ssh)
    assert s.agent.ssh == schema.SshSettings(host="cn01", known_hosts=Path("/k"),
                                             client_keys=(Path("/a"),))
    assert s.auth == schema.AuthSettings() and s.log == schema.LogSettings()
    assert s.daemon is None and s.api is None


def test_what_a_value_must_be() -> None:
    """The wording comes from the annotated type: one place for a range and its text."""
    hints = problems._fields(schema.DaemonSettings)[0]
    assert problems.what(hints["prefetch"]) == "an integer from 1 to 65535"
    assert problems.what(hints["start_deadline"]) == "a number > 0"
    assert problems.what(hints["no_shutdown"]) == "a list of non-empty strings"
    assert problems.what(hints["store"]) == "a path"
