"""The commented example files in config/: valid, complete, and honest about defaults;
`vmd check` run as a real process on good and bad files."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from vmd import config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "config"
VMD = str(Path(sys.executable).parent / "vmd")


def raw(name: str) -> dict[str, Any]:
    with (EXAMPLES / name).open("rb") as fh:
        return tomllib.load(fh)


def fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize(
    ("name", "sections"),
    [
        pytest.param("vmd.toml", ("broker", "daemon"), id="daemon"),
        pytest.param("agent-local.toml", ("broker", "agent"), id="agent-local"),
        pytest.param("agent-ssh.toml", ("broker", "agent"), id="agent-ssh"),
    ],
)
def test_example_is_valid(name: str, sections: tuple[str, ...]) -> None:
    path = EXAMPLES / name
    assert config.check(path, sections=sections) == []
    settings = config.load(path, sections=sections)
    assert settings.broker is not None


def test_daemon_example_shows_every_key_and_the_defaults() -> None:
    t = raw("vmd.toml")
    assert set(t["broker"]) == fields(config.BrokerSettings)
    assert set(t["daemon"]) == fields(config.DaemonSettings)
    assert set(t["auth"]) == fields(config.AuthSettings)
    assert set(t["log"]) == fields(config.LogSettings)
    defaults = config.DaemonSettings(store=Path("required"))
    for key, value in t["daemon"].items():
        if key not in ("store",):
            assert value == _plain(getattr(defaults, key)), f"[daemon] {key}"
    assert t["log"] == {"level": config.LogSettings().level, "format": config.LogSettings().format}
    s = config.load(EXAMPLES / "vmd.toml")
    assert s.daemon is not None and s.daemon.store == Path("/var/lib/vmd/vmd.sqlite3")
    assert s.auth.admins and s.auth.owners


@pytest.mark.parametrize("name", ["agent-local.toml", "agent-ssh.toml"])
def test_agent_examples_show_every_key_and_the_defaults(name: str) -> None:
    t = raw(name)
    tables = {"ssh", "memory"}
    assert set(t["agent"]) - tables == fields(config.AgentSettings) - tables
    defaults = config.AgentSettings(node="required")
    for key, value in t["agent"].items():
        if key not in ("node", "transport", *tables):
            assert value == _plain(getattr(defaults, key)), f"[agent] {key}"
    if "memory" in t["agent"]:
        assert set(t["agent"]["memory"]) == fields(config.MemorySettings)
        for key, value in t["agent"]["memory"].items():
            assert value == _plain(getattr(config.MemorySettings(), key)), f"[agent.memory] {key}"
    s = config.load(EXAMPLES / name, sections=("broker", "agent"))
    assert s.agent is not None
    if name == "agent-ssh.toml":
        assert set(t["agent"]["ssh"]) == fields(config.SshSettings)
        assert s.agent.transport == "ssh" and s.agent.ssh is not None
        ssh_defaults = config.SshSettings(host="required")
        for key, value in t["agent"]["ssh"].items():
            if key not in ("host", "client_keys"):
                assert value == _plain(getattr(ssh_defaults, key)), f"[agent.ssh] {key}"
    else:
        assert s.agent.transport == "local" and s.agent.ssh is None


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | frozenset):
        return sorted(_plain(v) for v in value)
    if isinstance(value, Path):
        return str(value)
    return value


def test_log_format_key(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[log]\nlevel = "DEBUG"\nformat = "json"\n')
    assert config.load(good).log == config.LogSettings(level="debug", format="json")
    bad = tmp_path / "bad.toml"
    bad.write_text('[log]\nformat = "xml"\n')
    assert config.check(bad) == [f"{bad}: [log] format: must be one of auto, json, console"]


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VMD, "check", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", ["vmd.toml", "agent-local.toml", "agent-ssh.toml"])
def test_check_accepts_the_examples(name: str) -> None:
    done = run_check("-c", str(EXAMPLES / name))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert len(done.stdout.splitlines()) == 1
    assert done.stdout.startswith(f"vmd check: {EXAMPLES / name}: ok (")


def test_check_lists_every_problem_one_per_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[broker]\nurl = "http://x"\n'
        '[daemon]\nstore = "/var/lib/vmd/vmd.sqlite3"\nshard = -1\nmetrics = "9464"\n'
        '[log]\nlevel = "loud"\n')
    done = run_check("-c", str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    *problems, summary = done.stderr.splitlines()
    assert problems == config.check(path, sections=("broker",))
    assert len(problems) == 5  # the last one: [auth.agents] missing
    assert all(p.startswith(f"{path}: [") for p in problems)
    assert problems[-1].startswith(f"{path}: [auth.agents] missing (required with [daemon]")
    assert summary == f"vmd check: {path}: 5 problems"
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("text", "args", "needle"),
    [
        pytest.param(None, (), "no such file", id="missing-file"),
        pytest.param("[broker\n", (), "not valid TOML", id="bad-toml"),
        pytest.param('[broker]\nurl = "amqp://x"\n', (), "neither [daemon], [agent] nor [api]",
                     id="nothing-to-run"),
        pytest.param('[broker]\nurl = "amqp://x"\n[agent]\nnode = "n1"\n', ("--for", "daemon"),
                     "[daemon] missing (required)", id="wrong-role"),
        pytest.param('[daemon]\nstore = "s"\n', (), "[broker] missing (required)",
                     id="no-broker"),
    ],
)
def test_check_refuses(tmp_path: Path, text: str | None, args: tuple[str, ...],
                       needle: str) -> None:
    path = tmp_path / "vmd.toml"
    if text is not None:
        path.write_text(text)
    done = run_check("-c", str(path), *args)
    assert done.returncode == 2
    assert needle in done.stderr.splitlines()[0]
    assert "Traceback" not in done.stderr


def test_check_for_agent_accepts_an_agent_file() -> None:
    done = run_check("-c", str(EXAMPLES / "agent-ssh.toml"), "--for", "agent")
    assert done.returncode == 0, done.stderr
    assert "agent for node node01.example.com (ssh root@node01.example.com:22)" in done.stdout
