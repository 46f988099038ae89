"""Edge validation rejects malformed and hostile values before any argv exists (pure)."""

from __future__ import annotations

import pytest

from vmd.node_agent.driver import commands, validate
from vmd.node_agent.driver.errors import ValidationError
from vmd.node_agent.driver.runner import remote_command

U = "54f1cc77-68f1-42ab-acac-5c4f64f5d6e0"

HOSTILE = [
    pytest.param("; rm -rf /", id="semicolon"),
    pytest.param("$(reboot)", id="command-substitution"),
    pytest.param("`reboot`", id="backticks"),
    pytest.param("../../etc/passwd", id="path-traversal"),
    pytest.param("-F", id="option-injection"),
    pytest.param("--force", id="long-option"),
    pytest.param("x.iso\nreboot", id="newline"),
    pytest.param("x.iso\x00", id="nul"),
    pytest.param("x\tiso", id="tab"),
    pytest.param("ísó.iso", id="unicode"),
    pytest.param("x.iso,ide", id="comma-splits-cdrom"),
    pytest.param("a b.iso", id="space"),
    pytest.param("", id="empty"),
    pytest.param("..", id="dotdot"),
    pytest.param(".hidden.iso", id="leading-dot"),
    pytest.param("a..iso", id="inner-dotdot"),
    pytest.param("x" * 256, id="too-long"),
    pytest.param("/iso/x.iso", id="absolute"),
    pytest.param("x=y.iso", id="equals"),
]


@pytest.mark.parametrize("value", HOSTILE)
def test_iso_name_rejects(value: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate.iso_name(value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", HOSTILE)
def test_start_with_hostile_iso_builds_nothing(value: str) -> None:
    with pytest.raises(ValidationError):
        commands.start_args(U, brand="kvm", cdimage=value)
    with pytest.raises(ValidationError):
        commands.start_args(U, brand="kvm", cdimage="ok.iso", cdimage2=value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("ubuntu-22.04.3-live-server-amd64.iso", id="ubuntu"),
        pytest.param("virtio-win_0.1.240+1.iso", id="plus-underscore"),
        pytest.param("x" * 255, id="max-length"),
        pytest.param("9.iso", id="digit-first"),
    ],
)
def test_iso_name_accepts(value: str) -> None:
    assert validate.iso_name(value) == value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(U.upper(), id="uppercase"),
        pytest.param(U[:-1], id="35-chars"),
        pytest.param(U + "0", id="37-chars"),
        pytest.param(U + "\n", id="trailing-newline"),
        pytest.param(U.replace("-", "_"), id="underscores"),
        pytest.param("54f1cc7768f1-42ab-acac-5c4f64f5d6e0-", id="dash-positions"),
        pytest.param(f"{U}; rm -rf /", id="semicolon"),
        pytest.param("$(reboot)-68f1-42ab-acac-5c4f64f5d6e0", id="substitution"),
        pytest.param("-F", id="option"),
        pytest.param("54f1cc77-68f1-42ab-acac-5c4f64f5d6eg", id="non-hex"),
        pytest.param("\uff154f1cc77-68f1-42ab-acac-5c4f64f5d6e0", id="fullwidth-digit"),
        pytest.param(None, id="none"),
        pytest.param(12, id="int"),
    ],
)
def test_uuid_rejects(value: object) -> None:
    with pytest.raises(ValidationError, match="invalid VM uuid"):
        validate.uuid(value)
    with pytest.raises(ValidationError):
        commands.stop_args(value, brand="kvm")  # type: ignore[arg-type]


def test_uuid_accepts() -> None:
    assert validate.uuid(U) == U


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("web01.example.com", id="fqdn"),
        pytest.param("a_b-c.d", id="underscore-dash"),
    ],
)
def test_hostname_accepts(value: str) -> None:
    assert validate.hostname(value) == value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("web01;reboot", id="semicolon"),
        pytest.param("a b", id="space"),
        pytest.param("web\n01", id="newline"),
        pytest.param("wéb01", id="unicode"),
        pytest.param("a" * 254, id="too-long"),
        pytest.param("", id="empty"),
    ],
)
def test_hostname_rejects(value: str) -> None:
    with pytest.raises(ValidationError, match="invalid hostname"):
        validate.hostname(value)


@pytest.mark.parametrize("value", [0, 1, 180, 3600])
def test_timeout_accepts(value: int) -> None:
    assert validate.timeout(value) == value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(-1, id="negative"),
        pytest.param(3601, id="too-big"),
        pytest.param(1.5, id="float"),
        pytest.param("10", id="string"),
        pytest.param("10; reboot", id="injection"),
        pytest.param(True, id="bool"),
    ],
)
def test_timeout_rejects(value: object) -> None:
    with pytest.raises(ValidationError, match="invalid timeout"):
        validate.timeout(value)
    with pytest.raises(ValidationError):
        commands.stop_args(U, brand="kvm", timeout=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param([1, 2], id="list"),
        pytest.param("{}", id="string"),
        pytest.param({1: "x"}, id="int-key"),
        pytest.param({"ram": float("nan")}, id="nan"),
        pytest.param({"x": object()}, id="not-json"),
        pytest.param({"x": "y" * (1 << 20)}, id="too-big"),
    ],
)
def test_payload_rejects(value: object) -> None:
    with pytest.raises(ValidationError, match="invalid update payload"):
        validate.payload(value)


def test_payload_accepts_nested_and_null() -> None:
    value = {"ram": 1024, "bhyve_extra_opts": None, "set_tags": {"a": "b"}}
    assert validate.payload(value) == value


@pytest.mark.parametrize("value", ["KVM", "docker", "kvm ", ""])
def test_brand_rejects(value: str) -> None:
    with pytest.raises(ValidationError, match="invalid brand"):
        validate.brand(value)


@pytest.mark.parametrize("value", ["0-a2327793-2600-423d-9f07", "vmd-sync-0a1b2c3d4e5f", "x"])
def test_req_id_accepts(value: str) -> None:
    assert validate.req_id(value) == value


@pytest.mark.parametrize("value", ["", "-x", "a b", "a;b", "a\nb", "x" * 129, "é", 7])
def test_req_id_rejects(value: object) -> None:
    with pytest.raises(ValidationError):
        validate.req_id(value)


def test_remote_command_quotes_assignments() -> None:
    assert remote_command(["vmadm", "get", "u"], {"REQ_ID": "a b"}) == "REQ_ID='a b' vmadm get u"
    assert remote_command(["ls", "-1"]) == "ls -1"
    with pytest.raises(ValueError):
        remote_command(["ls"], {"X; rm": "1"})
