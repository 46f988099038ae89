"""The TOML settings: the issue's exact key names, defaults, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmd import config

FULL = """
[broker]
url = "amqp://vmd:secret@127.0.0.1:5672/vmd"

[daemon]
store = "/var/lib/vmd/vmd.sqlite3"
shard = 0
no_shutdown = ["web01.example.com"]
start_deadline = 330
stop_grace = 150
metrics = "127.0.0.1:9464"

[auth]
admins = ["admin"]
[auth.owners]
alice = ["8a1a4e6c-0000-4000-8000-000000000001"]
[auth.agents]
"vmd-agent-node01" = ["node01", "node02"]

[agent]
node = "node01"
vmadm = ["vmd-vmadm"]
zonecfg = ["vmd-zonecfg"]
heartbeat_interval = 5
poll_interval = 60
metrics = "127.0.0.1:9465"
transport = "ssh"
[agent.ssh]
host = "cn01.example.com"
port = 22
username = "root"
client_keys = ["/etc/vmd/id_ed25519"]
known_hosts = "/etc/vmd/known_hosts"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "vmd.toml"
    path.write_text(text)
    return path


def test_full_file_loads_with_every_documented_key(tmp_path: Path) -> None:
    s = config.load(write(tmp_path, FULL), sections=("broker", "daemon", "agent"))
    assert s.broker is not None and s.broker.url.endswith("/vmd")
    assert s.daemon is not None
    assert s.daemon.store == Path("/var/lib/vmd/vmd.sqlite3")
    assert s.daemon.no_shutdown == frozenset({"web01.example.com"})
    assert (s.daemon.start_deadline, s.daemon.stop_grace) == (330.0, 150.0)
    assert s.auth.admins == frozenset({"admin"})
    assert s.auth.owners["alice"] == frozenset({"8a1a4e6c-0000-4000-8000-000000000001"})
    assert s.auth.agents == {"vmd-agent-node01": frozenset({"node01", "node02"})}
    assert s.agent is not None and s.agent.ssh is not None
    assert s.agent.daemon_user == "vmd"
    assert s.agent.vmadm == ("vmd-vmadm",)
    assert s.agent.zonecfg == ("vmd-zonecfg",)
    assert s.agent.ssh.client_keys == (Path("/etc/vmd/id_ed25519"),)
    assert s.agent.ssh.known_hosts == Path("/etc/vmd/known_hosts")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        pytest.param("[daemon]\nstore='x'\n", "[broker] missing", id="missing-section"),
        pytest.param("[broker]\nurl='http://x'\n", "[broker] url: must be an amqp:// URL",
                     id="bad-url"),
        pytest.param("[broker]\n", "[broker] url: missing", id="missing-key"),
        pytest.param("[broker]\nurl='amqp://x'\n[daemon]\nstore='s'\nshard=-1\n",
                     "[daemon] shard: must be an integer >= 0", id="negative-shard"),
        pytest.param("[broker]\nurl='amqp://x'\n[daemon]\nstore='s'\nstop_grace='a'\n",
                     "[daemon] stop_grace: must be a number > 0", id="bad-number"),
        pytest.param("[broker\n", "not valid TOML", id="bad-toml"),
    ],
)
def test_problems_are_one_line(tmp_path: Path, text: str, needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(config.ConfigError) as info:
        config.load(path, sections=("broker", "daemon"))
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_check_lists_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "[broker]\nurl=1\n[agent]\ntransport='tcp'\n")
    problems = config.check(path, sections=("broker", "agent"))
    assert any("[broker] url" in p for p in problems)
    assert any("[agent] node: missing" in p for p in problems)
    assert any("[agent] transport" in p for p in problems)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="no such file"):
        config.load(tmp_path / "nope.toml")


def test_a_daemon_file_without_auth_agents_is_refused(tmp_path: Path) -> None:
    """No deployment runs open by accident: the daemon needs to know its agents' users."""
    text = FULL.replace('[auth.agents]\n"vmd-agent-node01" = ["node01", "node02"]\n', "")
    path = write(tmp_path, text)
    with pytest.raises(config.ConfigError, match=r"\[auth.agents\] missing \(required with"):
        config.load(path, sections=("broker", "daemon"))
    assert config.check(path) == [
        f"{path}: [auth.agents] missing (required with [daemon]: the broker user of each "
        "node agent = [the nodes it reports for], docs/security.md)"]
    # An agent's file needs none; an empty table is an explicit "no agents".
    agent_only = write(tmp_path, '[broker]\nurl = "amqp://x"\n[agent]\nnode = "n1"\n')
    assert config.check(agent_only, sections=("broker", "agent")) == []
    assert config.check(write(tmp_path, text + "[auth.agents]\n")) == []


@pytest.mark.parametrize(
    ("agents", "needle"),
    [
        pytest.param('a = "node1"', "[auth.agents] a: must be a list of node names",
                     id="not-a-list"),
        pytest.param('alice = ["node1"]', "[auth.agents] alice: is also a principal in [auth]",
                     id="agent-is-a-principal"),
    ],
)
def test_bad_auth_agents(tmp_path: Path, agents: str, needle: str) -> None:
    text = FULL.replace('"vmd-agent-node01" = ["node01", "node02"]', agents)
    assert any(needle in p for p in config.check(write(tmp_path, text))), needle


# Issue 16, finding 1: mistakes that used to pass `vmd check` silently.
AGENT_ONLY = '[broker]\nurl = "amqp://x"\n[agent]\nnode = "n1"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(FULL.replace("start_deadline = 330", "start_dealine = 10"),
                     "[daemon] start_dealine: unknown key (did you mean start_deadline?)",
                     id="misspelt-key"),
        pytest.param(FULL.replace("[daemon]", "[daemn]").replace("[auth]", "[daemon]\n"
                     "store = 's'\n[auth]"),
                     "[daemn]: unknown section (did you mean [daemon]?)", id="unknown-section"),
        pytest.param(FULL.replace("port = 22", "port = 70000"),
                     "[agent.ssh] port: must be an integer from 1 to 65535 (got 70000)",
                     id="port-70000"),
        pytest.param(FULL.replace("port = 22", "port = 0"),  # was silently port 22
                     "[agent.ssh] port: must be an integer from 1 to 65535 (got 0)",
                     id="port-0"),
        pytest.param(FULL.replace("shard = 0", "prefetch = 0"),
                     "[daemon] prefetch: must be an integer from 1 to 65535 (got 0)",
                     id="prefetch-0"),
        pytest.param(AGENT_ONLY + "max_parallel = 0\n",
                     "[agent] max_parallel: must be an integer >= 1 (got 0)", id="max-parallel-0"),
    ],
)
def test_mistakes_are_problems(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    assert config.check(path) == [f"{path}: {expected}"]
    with pytest.raises(config.ConfigError) as info:
        config.load(path)
    assert str(info.value) == f"{path}: {expected}"


def test_explicit_values_are_never_replaced_by_defaults(tmp_path: Path) -> None:
    """The old `value or default`: 0 and "" were read as "not set"."""
    text = (FULL.replace("shard = 0", "shard = 0\nhistory_keep = 0\nprefetch = 1")
            .replace('node = "node01"', 'node = "node01"\nmax_parallel = 1')
            .replace('url = "amqp://vmd:secret@127.0.0.1:5672/vmd"',
                     'url = "amqp://vmd:secret@127.0.0.1:5672/vmd"\nconnect_attempts = 0')
            + "[agent.memory]\nvms = 0\nstart_seconds = 0\nisos = []\n")
    s = config.load(write(tmp_path, text))
    assert s.daemon is not None and s.agent is not None and s.broker is not None
    assert (s.daemon.history_keep, s.daemon.prefetch, s.daemon.shard) == (0, 1, 0)
    assert s.agent.max_parallel == 1
    assert s.broker.connect_attempts == 0
    assert s.agent.memory == config.MemorySettings(vms=0, start_seconds=0.0, isos=())


def test_a_missing_known_hosts_file_is_a_problem_for_vmd_check(tmp_path: Path) -> None:
    """The agent used to find out only when it connected; `vmd check` finds it first
    (the file itself is valid: config.load accepts it, tests/test_config_examples.py runs
    `vmd check`)."""
    from vmd.settings import paths

    path = write(tmp_path, FULL.replace("/etc/vmd/known_hosts", str(tmp_path / "nope")))
    s = config.load(path)
    assert paths.problems(s.agent) == [
        f"[agent.ssh] known_hosts: {tmp_path / 'nope'}: no such file (the agent verifies the "
        "node's host key against it)",
        "[agent.ssh] client_keys: /etc/vmd/id_ed25519: no such file"]
