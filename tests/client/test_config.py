"""Where vmctl's URL comes from (vmctl_config.py): the order of the sources, and files that
hold a password refused, as ssh refuses a key, when others may read them."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmd.cli.vmctl_args import Invocation, UsageError, parse_argv
from vmd.cli.vmctl_config import DEFAULT_URL, ConfigError, resolve_url

URL = "amqp://alice:s3cret@broker:5672/vmd"


def private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_order_of_the_sources(tmp_path: Path) -> None:
    url_file = private(tmp_path / "url", "# the demo's alice\n\n" + URL.replace("s3", "f1") + "\n")
    private(tmp_path / "cfg" / "vmctl" / "config.toml", f'url = "{URL.replace("s3", "c0")}"\n')
    env = {"VMD_URL": URL, "VMD_URL_FILE": str(url_file), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    assert resolve_url("amqp://bob:b@h/v", env).origin == "-u"
    assert resolve_url(None, env).url == URL
    del env["VMD_URL"]
    assert resolve_url(None, env).url == URL.replace("s3", "f1")  # comments skipped
    assert resolve_url(None, env).origin == "VMD_URL_FILE"
    del env["VMD_URL_FILE"]
    got = resolve_url(None, env)
    assert got.url == URL.replace("s3", "c0")
    assert got.origin == str(tmp_path / "cfg" / "vmctl" / "config.toml")
    assert resolve_url(None, {"HOME": str(tmp_path / "nohome")}).url == DEFAULT_URL


def test_config_under_home(tmp_path: Path) -> None:
    private(tmp_path / ".config" / "vmctl" / "config.toml", f'url = "{URL}"\n')
    parsed = parse_argv(["get", "/vm/status"], {"HOME": str(tmp_path)})
    assert isinstance(parsed, Invocation)
    assert parsed.url == URL


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_a_file_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    config = private(tmp_path / "vmctl" / "config.toml", f'url = "{URL}"\n', mode)
    with pytest.raises(ConfigError) as caught:
        resolve_url(None, {"XDG_CONFIG_HOME": str(tmp_path)})
    message = str(caught.value)
    assert message == (f"permissions {mode:04o} for {config} are too open: it holds a "
                       f"password, so only its owner may read it (chmod 600 {config})")
    url_file = private(tmp_path / "url", URL, mode)
    with pytest.raises(ConfigError, match="too open"):
        resolve_url(None, {"VMD_URL_FILE": str(url_file)})


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_file_is_read(tmp_path: Path, mode: int) -> None:
    url_file = private(tmp_path / "url", URL, mode)
    assert resolve_url(None, {"VMD_URL_FILE": str(url_file)}).url == URL


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param('uri = "amqp://a:b@h/v"\n', "unknown key 'uri' (did you mean 'url'?)",
                     id="misspelt-key"),
        pytest.param("[broker]\nurl = 'x'\n", "unknown key 'broker'", id="a-section"),
        pytest.param("", "missing url", id="empty"),
        pytest.param("url = 5\n", "missing url", id="not-a-string"),
        pytest.param("url = \n", "not valid TOML", id="not-toml"),
    ],
)
def test_bad_config_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    private(tmp_path / "vmctl" / "config.toml", text)
    with pytest.raises(UsageError) as caught:
        parse_argv(["get", "/vm/status"], {"XDG_CONFIG_HOME": str(tmp_path)})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_or_empty_url_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read .*No such file"):
        resolve_url(None, {"VMD_URL_FILE": str(tmp_path / "nope")})
    empty = private(tmp_path / "empty", "# nothing\n")
    with pytest.raises(ConfigError, match="holds no URL"):
        resolve_url(None, {"VMD_URL_FILE": str(empty)})


def test_help_needs_no_url_source(tmp_path: Path) -> None:
    private(tmp_path / "vmctl" / "config.toml", "garbage", 0o644)
    assert parse_argv(["--help"], {"XDG_CONFIG_HOME": str(tmp_path)})
