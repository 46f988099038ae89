"""`[api]` in vmd/config.py: the commented example, defaults, and one line per problem."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from vmd import config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "api.toml"


def test_example_is_valid_and_shows_every_key_with_its_default() -> None:
    assert config.check(EXAMPLE, sections=("api",)) == []
    settings = config.load(EXAMPLE, sections=("api",))
    assert settings.api is not None
    raw = tomllib.loads(EXAMPLE.read_text())["api"]
    # A key whose default TOML cannot write (None) is shown commented out.
    assert set(raw) == {f.name for f in dataclasses.fields(config.ApiSettings)
                        if f.default is not None}
    defaults = config.ApiSettings(broker_url="required")
    for key, value in raw.items():
        if key not in ("broker_url", "keys"):
            assert value == getattr(defaults, key), f"[api] {key}"
    assert settings.api.broker_url == "amqp://vmd-api:secret@127.0.0.1:5672/vmd"
    assert set(settings.api.keys.values()) == {"admin", "alice"}
    assert settings.log.format == "auto"


def test_the_defaults_are_where_es_looks() -> None:
    # Danube's `es` has API_URL = 'http://127.0.0.1:8000/api' (bin/es).
    defaults = config.ApiSettings(broker_url="amqp://x")
    assert (defaults.listen, defaults.prefix) == ("127.0.0.1:8000", "/api")


def test_secrets_stay_out_of_repr() -> None:
    settings = config.ApiSettings(broker_url="amqp://u:pw@h/v", keys={"k" * 16: "admin"})
    assert "pw" not in repr(settings) and "k" * 16 not in repr(settings)


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        pytest.param("/api", "/api", id="api"),
        pytest.param("/api/", "/api", id="trailing-slash"),
        pytest.param("/v1/api", "/v1/api", id="deep"),
        pytest.param("/", "", id="root"),
        pytest.param("", "", id="none"),
    ],
)
def test_prefix(tmp_path: Path, prefix: str, expected: str) -> None:
    path = tmp_path / "api.toml"
    path.write_text(f'[api]\nbroker_url = "amqp://x"\nprefix = "{prefix}"\n')
    settings = config.load(path, sections=("api",))
    assert settings.api is not None and settings.api.prefix == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("", "[api] broker_url: missing (required)", id="no-url"),
        pytest.param('broker_url = "http://x"', "[api] broker_url: must be an amqp:// URL",
                     id="bad-url"),
        pytest.param('listen = "8000"', "[api] listen: must be host:port", id="listen"),
        pytest.param('prefix = "api"', "[api] prefix: must be", id="relative-prefix"),
        pytest.param('prefix = "/a b"', "[api] prefix: must be", id="space-in-prefix"),
        pytest.param("timeout = 0", "[api] timeout: must be a number > 0", id="timeout"),
        pytest.param('drain_timeout = "x"', "[api] drain_timeout: must be a number > 0",
                     id="drain"),
        pytest.param('metrics = "x"', "[api] metrics: must be host:port", id="metrics"),
        pytest.param('keys = "k"', "[api.keys] must be a table", id="keys-not-table"),
        pytest.param('[api.keys]\n"0123456789abcde" = "admin"',
                     "[api.keys] 0123...: an API key must be at least 16", id="short-key"),
        pytest.param('[api.keys]\n"0123456789abcdef 0" = "admin"',
                     "[api.keys] 0123...: an API key must be at least 16", id="key-space"),
        pytest.param('[api.keys]\n"0123456789abcdéf" = "admin"',
                     "[api.keys] 0123...: an API key must be at least 16", id="key-non-ascii"),
        pytest.param('[api.keys]\n"0123456789abcdef" = ""',
                     "[api.keys] 0123...: must be a principal", id="empty-principal"),
        pytest.param('[api.keys]\n"0123456789abcdef" = ["admin"]',
                     "[api.keys] 0123...: must be a principal", id="list-principal"),
    ],
)
def test_problems_are_one_line_each(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "api.toml"
    url = "" if "broker_url" in text or text == "" else 'broker_url = "amqp://x"\n'
    path.write_text(f"[api]\n{url}{text}\n")
    [line] = config.check(path, sections=("api",))
    assert line.startswith(f"{path}: {problem}")
    # Never a whole key in a message.
    assert "0123456789abcdef" not in line


def test_no_api_section(tmp_path: Path) -> None:
    path = tmp_path / "vmd.toml"
    path.write_text('[broker]\nurl = "amqp://x"\n')
    assert config.load(path).api is None
    assert config.check(path, sections=("api",)) == [f"{path}: [api] missing (required)"]
