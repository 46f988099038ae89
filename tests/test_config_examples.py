"""The commented templates in config/ (what `vmd config example` prints), and the key
tables of docs/daemon.md and docs/agent.md, against the schema they document
(vmd.settings.schema), so they cannot drift: every key of every section shown, each value
the default unless its comment says "required" or "example", each template accepted by
`vmd check`; and `vmd check` run as a real process on good and bad files."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from vmd import config
from vmd.cli.config_cmd import EXAMPLES
from vmd.settings import problems, schema, validate

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "config"
VMD = str(Path(sys.executable).parent / "vmd")

# Each template: the tables it shows (a dict-valued table such as [auth.owners] holds
# example entries, not keys), and the sections its process requires.
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "daemon": (("broker", "daemon", "auth", "auth.owners", "auth.agents", "log"),
               ("broker", "daemon")),
    "agent": (("broker", "agent", "agent.memory", "log"), ("broker", "agent")),
    "agent-ssh": (("broker", "agent", "agent.ssh", "log"), ("broker", "agent")),
    "api": (("api", "api.keys", "log"), ("api",)),
}
RECORDS: dict[str, type] = {
    "broker": schema.BrokerSettings, "daemon": schema.DaemonSettings,
    "auth": schema.AuthSettings, "agent": schema.AgentSettings,
    "agent.ssh": schema.SshSettings, "agent.memory": schema.MemorySettings,
    "api": schema.ApiSettings, "log": schema.LogSettings,
}
_ASSIGN = re.compile(r"^(#\s*)?(\"[^\"]+\"|[A-Za-z_][\w-]*)\s*=\s*(.+)$")


class Entry(NamedTuple):
    table: str
    key: str
    value: Any
    comment: str  # the comment lines right above it
    commented_out: bool  # `# key = value`: shown, not set (a default TOML cannot write)


def entries(text: str) -> list[Entry]:
    out: list[Entry] = []
    table, comment = "", []
    for line in text.splitlines():
        header = re.fullmatch(r"\[([\w.]+)\]", line.strip())
        assign = _ASSIGN.match(line.strip())
        if header:
            table, comment = header.group(1), []
        elif assign and table:
            key = assign.group(2).strip('"')
            value = tomllib.loads(f"v = {assign.group(3)}")["v"]
            out.append(Entry(table, key, value, " ".join(comment), bool(assign.group(1))))
            comment = []
        elif line.startswith("#"):
            comment.append(line.lstrip("# "))
        else:
            comment = []
    return out


def template(process: str) -> str:
    return (TEMPLATES / EXAMPLES[process]).read_text()


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | frozenset):
        return sorted(_plain(v) for v in value)
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = _plain(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = _plain(f.default_factory())
    return out


@pytest.mark.parametrize("process", list(EXAMPLES))
def test_template_shows_every_key_of_its_sections(process: str) -> None:
    tables, _ = TABLES[process]
    found = entries(template(process))
    assert [t for t in tables if t not in {e.table for e in found}] == []
    for table in tables:
        if table not in RECORDS:
            continue  # example entries of a dict-valued table
        hints = problems._fields(RECORDS[table])[0]
        subtables = {name for name, kind in hints.items()
                     if problems._is_table(problems._bare(kind))}
        keys = {e.key for e in found if e.table == table}
        assert keys == set(hints) - subtables, f"[{table}]"


@pytest.mark.parametrize("process", list(EXAMPLES))
def test_template_values_are_the_defaults_unless_marked(process: str) -> None:
    assert '"required" or "example"' in template(process) or process == "api"
    for e in entries(template(process)):
        if e.table not in RECORDS:
            continue
        marked = re.search(r"\b(required|example)", e.comment, re.IGNORECASE)
        defaults = _defaults(RECORDS[e.table])
        if e.commented_out:  # only a default TOML cannot write is shown commented out
            assert defaults.get(e.key, "required") is None, f"[{e.table}] {e.key}"
        elif e.key not in defaults:
            assert re.search(r"\brequired\b", e.comment, re.IGNORECASE), \
                f"[{e.table}] {e.key}: required, and its comment must say so"
        elif not marked:
            assert _plain(e.value) == defaults[e.key], f"[{e.table}] {e.key}"


@pytest.mark.parametrize("process", list(EXAMPLES))
def test_template_is_valid_also_with_its_commented_out_keys(process: str) -> None:
    _, sections = TABLES[process]
    text = template(process)
    assert validate(TEMPLATES / EXAMPLES[process], tomllib.loads(text),
                    sections=sections)[1] == []
    uncommented = re.sub(r"^#\s*(\w+\s*=)", r"\1", text, flags=re.MULTILINE)
    assert uncommented != text or not any(e.commented_out for e in entries(text))
    assert validate(Path("x"), tomllib.loads(uncommented), sections=sections)[1] == []


def run_vmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VMD, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("process", list(EXAMPLES))
def test_vmd_config_example_prints_the_template_and_check_accepts_it(
        process: str, tmp_path: Path) -> None:
    done = run_vmd("config", "example", process)
    assert done.returncode == 0, done.stderr
    assert done.stdout == template(process)
    path = tmp_path / "settings.toml"
    path.write_text(done.stdout)
    # --no-paths: the template names files of a real node (/etc/vmd/known_hosts, /iso).
    checked = run_vmd("check", "-c", str(path), "--no-paths", "--for",
                      process.removesuffix("-ssh"))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"vmd check: {path}: ok (")
    assert checked.stderr == ""


def test_vmd_config_example_refuses_an_unknown_process() -> None:
    done = run_vmd("config", "example", "daemn")
    assert done.returncode == 2
    assert "invalid choice: 'daemn'" in done.stderr


def test_check_verifies_the_files_an_agent_needs_on_this_machine(tmp_path: Path) -> None:
    """A known_hosts file that is not there is found before the start, not at connect."""
    known, key = tmp_path / "known_hosts", tmp_path / "id_ed25519"
    text = template("agent-ssh").replace("/etc/vmd/known_hosts", str(known)).replace(
        "/etc/vmd/id_ed25519", str(key))
    path = tmp_path / "agent.toml"
    path.write_text(text)
    done = run_vmd("check", "-c", str(path))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"{path}: [agent.ssh] known_hosts: {known}: no such file (the agent verifies the "
        "node's host key against it)",
        f"{path}: [agent.ssh] client_keys: {key}: no such file",
        f"vmd check: {path}: 2 problems"]
    known.write_text("node01.example.com ssh-ed25519 AAAA\n")
    key.write_text("key\n")
    done = run_vmd("check", "-c", str(path))
    assert done.returncode == 0, done.stderr


def test_check_verifies_a_local_agents_iso_dir_and_commands(tmp_path: Path) -> None:
    vmadm = tmp_path / "vmadm"
    vmadm.write_text("#!/bin/sh\n")
    vmadm.chmod(0o755)
    text = (template("agent").replace('"/iso"', f'"{tmp_path / "iso"}"')
            .replace('"/usr/sbin/vmadm"', f'"{vmadm}"')
            .replace('"/usr/sbin/zonecfg"', '"no-such-zonecfg-here"'))
    path = tmp_path / "agent.toml"
    path.write_text(text)
    done = run_vmd("check", "-c", str(path))
    assert done.returncode == 2
    assert done.stderr.splitlines()[:-1] == [
        f"{path}: [agent] iso_dir: {tmp_path / 'iso'}: no such directory",
        f"{path}: [agent] zonecfg: no-such-zonecfg-here: no such executable on PATH"]
    # The memory backend runs nothing on the machine: nothing to find.
    path.write_text(text.replace('backend = "vmadm"', 'backend = "memory"'))
    assert run_vmd("check", "-c", str(path)).returncode == 0


def test_log_format_key(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[log]\nlevel = "DEBUG"\nformat = "json"\n')
    assert config.load(good).log == config.LogSettings(level="debug", format="json")
    bad = tmp_path / "bad.toml"
    bad.write_text('[log]\nformat = "xml"\n')
    assert config.check(bad) == [
        f"{bad}: [log] format: must be one of auto, json, console (got 'xml')"]


def test_check_lists_every_problem_one_per_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[broker]\nurl = "http://x"\n'
        '[daemon]\nstore = "/var/lib/vmd/vmd.sqlite3"\nshard = -1\nmetrics = "9464"\n'
        'start_dealine = 10\n[daemn]\n[log]\nlevel = "loud"\n')
    done = run_vmd("check", "-c", str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    *problems, summary = done.stderr.splitlines()
    assert problems == config.check(path, sections=("broker",))
    assert len(problems) == 7  # the last one: [auth.agents] missing
    assert all(p.startswith(f"{path}: [") for p in problems)
    assert f"{path}: [daemon] start_dealine: unknown key (did you mean start_deadline?)" \
        in problems
    assert f"{path}: [daemn]: unknown section (did you mean [daemon]?)" in problems
    assert problems[-1].startswith(f"{path}: [auth.agents] missing (required with [daemon]")
    assert summary == f"vmd check: {path}: 7 problems"
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
        pytest.param('[broker]\nurl = "amqp://x"\n[agent]\nnode = "n1"\nmax_parallel = 0\n',
                     (), "[agent] max_parallel: must be an integer >= 1 (got 0)",
                     id="max-parallel-0"),
    ],
)
def test_check_refuses(tmp_path: Path, text: str | None, args: tuple[str, ...],
                       needle: str) -> None:
    path = tmp_path / "vmd.toml"
    if text is not None:
        path.write_text(text)
    done = run_vmd("check", "-c", str(path), *args)
    assert done.returncode == 2
    assert needle in done.stderr.splitlines()[0]
    assert "Traceback" not in done.stderr


def test_check_for_agent_accepts_an_agent_file() -> None:
    done = run_vmd("check", "-c", str(TEMPLATES / "agent-ssh.toml"), "--for", "agent",
                   "--no-paths")
    assert done.returncode == 0, done.stderr
    assert "agent for node node01.example.com (ssh root@node01.example.com:22)" in done.stdout


@pytest.mark.parametrize(
    ("doc", "heading", "record"),
    [
        pytest.param("daemon.md", "## Configuration", schema.DaemonSettings, id="daemon"),
        pytest.param("agent.md", "## Configuration", schema.AgentSettings, id="agent"),
    ],
)
def test_the_docs_key_tables_state_the_schemas_defaults(doc: str, heading: str,
                                                        record: type) -> None:
    """docs/daemon.md and docs/agent.md list keys with their defaults by hand: each row
    naming a key of the section must state the schema's default ("required" for none)."""
    text = (ROOT / "docs" / doc).read_text()
    section = text[text.index(heading):]
    section = section[:section.find("\n## ", 1)]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, flags=re.MULTILINE)
    defaults = _defaults(record)
    checked = 0
    for key, shown in rows:
        if key not in {f.name for f in dataclasses.fields(record)}:
            continue
        shown = shown.strip().strip("`")
        if key not in defaults:
            assert shown == "required", f"{doc}: {key}"
        else:
            try:
                value = tomllib.loads(f"v = {shown}")["v"]
            except tomllib.TOMLDecodeError:
                value = shown  # an address written without quotes
            assert _plain(value) == defaults[key], f"{doc}: `{key}` says {shown}"
        checked += 1
    assert checked >= 10, rows
