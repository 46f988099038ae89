"""argv building for every start/stop/reboot variant and brand (pure)."""

from __future__ import annotations

import pytest

from vmd.node_agent.driver import commands
from vmd.node_agent.driver.commands import Timeouts
from vmd.node_agent.driver.errors import ValidationError

U = "54f1cc77-68f1-42ab-acac-5c4f64f5d6e0"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({"brand": "kvm"}, ["start", U], id="kvm-plain"),
        pytest.param(
            {"brand": "kvm", "cdimage": "x.iso"},
            ["start", U, "order=c,once=d", "cdrom=/iso/x.iso,ide"],
            id="kvm-iso-once",
        ),
        pytest.param(
            {"brand": "kvm", "cdimage": "x.iso", "cdimage_once": False},
            ["start", U, "order=d", "cdrom=/iso/x.iso,ide"],
            id="kvm-iso-persistent",
        ),
        pytest.param(
            {"brand": "kvm", "cdimage": "x.iso", "cdimage2": "drivers-1.2.iso"},
            ["start", U, "order=c,once=d", "cdrom=/iso/x.iso,ide",
             "cdrom=/iso/drivers-1.2.iso,ide"],
            id="kvm-two-isos",
        ),
        pytest.param(
            {"brand": "kvm", "cdimage": "x.iso", "cdimage_once": False, "cdimage2": "y.iso"},
            ["start", U, "order=d", "cdrom=/iso/x.iso,ide", "cdrom=/iso/y.iso,ide"],
            id="kvm-two-isos-persistent",
        ),
        pytest.param({"brand": "bhyve"}, ["start", U], id="bhyve-plain"),
        pytest.param({"brand": "bhyve", "cdimage": "x.iso"}, ["start", U],
                     id="bhyve-iso-goes-to-extra-opts"),
        pytest.param({"brand": "joyent"}, ["start", U], id="joyent"),
        pytest.param({"brand": "joyent-minimal", "cdimage": "x.iso"}, ["start", U],
                     id="joyent-minimal-iso-ignored"),
        pytest.param({"brand": "lx", "cdimage": "x.iso", "cdimage2": "y.iso"}, ["start", U],
                     id="lx-isos-ignored"),
    ],
)
def test_start_args(kwargs: dict[str, object], expected: list[str]) -> None:
    assert commands.start_args(U, **kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({"brand": "kvm"}, ["stop", U], id="kvm-graceful"),
        pytest.param({"brand": "kvm", "timeout": 300}, ["stop", U, "-t", "300"], id="kvm-t"),
        pytest.param({"brand": "kvm", "timeout": 0}, ["stop", U], id="kvm-t0-is-default"),
        pytest.param({"brand": "kvm", "force": True}, ["stop", U, "-F"], id="kvm-force"),
        pytest.param({"brand": "kvm", "force": True, "timeout": 60}, ["stop", U, "-F"],
                     id="kvm-force-ignores-t"),
        pytest.param({"brand": "bhyve", "timeout": 5}, ["stop", U, "-t", "5"], id="bhyve-t"),
        pytest.param({"brand": "bhyve", "force": True}, ["stop", U, "-F"], id="bhyve-force"),
        pytest.param({"brand": "joyent", "timeout": 180}, ["stop", U], id="joyent-never-t"),
        pytest.param({"brand": "joyent-minimal", "timeout": 5}, ["stop", U],
                     id="joyent-minimal-never-t"),
        pytest.param({"brand": "lx", "timeout": 3600}, ["stop", U], id="lx-never-t"),
        pytest.param({"brand": "lx", "force": True}, ["stop", U, "-F"], id="lx-force"),
    ],
)
def test_stop_args(kwargs: dict[str, object], expected: list[str]) -> None:
    assert commands.stop_args(U, **kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("force", "expected"),
    [
        pytest.param(False, ["reboot", U], id="graceful"),
        pytest.param(True, ["reboot", U, "-F"], id="force"),
    ],
)
def test_reboot_args(force: bool, expected: list[str]) -> None:
    assert commands.reboot_args(U, force=force) == expected


def test_query_and_stream_args() -> None:
    assert commands.get_args(U) == ["get", U]
    assert commands.update_args(U) == ["update", U]
    assert commands.events_args() == ["events", "-j", "-r"]
    lookup = commands.lookup_args()
    assert lookup[:3] == ["lookup", "-j", "-o"]
    assert set(lookup[3].split(",")) >= {"uuid", "state", "brand", "owner_uuid", "hostname"}
    assert commands.ls_argv("/iso") == ["ls", "-1", "-p", "--", "/iso"]


@pytest.mark.parametrize(
    ("current", "iso2", "expected"),
    [
        pytest.param(None, None, "-s 3:0,ahci-cd,/iso/x.iso", id="none"),
        pytest.param("  ", None, "-s 3:0,ahci-cd,/iso/x.iso", id="blank"),
        pytest.param("-c 2", "y.iso", "-c 2 -s 3:0,ahci-cd,/iso/x.iso -s 3:1,ahci-cd,/iso/y.iso",
                     id="kept-and-two"),
    ],
)
def test_bhyve_extra_opts(current: str | None, iso2: str | None, expected: str) -> None:
    assert commands.bhyve_extra_opts(current, "x.iso", iso2) == expected


def test_cdimage2_needs_cdimage() -> None:
    with pytest.raises(ValidationError, match="cdimage2 requires cdimage"):
        commands.start_args(U, brand="kvm", cdimage2="y.iso")


@pytest.mark.parametrize(
    ("brand", "force", "timeout", "expected"),
    [
        pytest.param("kvm", False, None, 180 + 150, id="kvm-default"),
        pytest.param("kvm", False, 0, 180 + 150, id="kvm-zero"),
        pytest.param("kvm", False, 20, 20 + 150, id="kvm-short"),
        pytest.param("bhyve", False, 3600, 300 + 150, id="capped-at-vmadm-failsafe"),
        pytest.param("joyent", False, 20, 60 + 150, id="zone-ignores-timeout"),
        pytest.param("lx", True, None, 90, id="force"),
    ],
)
def test_stop_time_limit(brand: str, force: bool, timeout: int | None, expected: float) -> None:
    assert Timeouts().stop(brand, force=force, timeout=timeout) == expected


def test_zonecfg_iso_mount_is_one_argument() -> None:
    assert commands.zonecfg_info_fs_args(U) == ["-z", U, "info", "fs"]
    assert commands.zonecfg_add_iso_args(U, "/iso/") == [
        "-z", U,
        "add fs; set dir=/iso; set special=/iso; set type=lofs; add options [ro,nodevices]; end",
    ]


@pytest.mark.parametrize("iso_dir", ["/opt/my isos", "/iso;add fs", "relative", "/a/../b", "/é"])
def test_zonecfg_refuses_an_iso_dir_it_would_misread(iso_dir: str) -> None:
    with pytest.raises(ValidationError):
        commands.zonecfg_add_iso_args(U, iso_dir)


def test_fs_dirs_of_zonecfg_info() -> None:
    info = ("fs:\n\tdir: /iso\n\tspecial: /opt/iso\n\traw not specified\n\ttype: lofs\n"
            "\toptions: [ro,nodevices]\nnet:\n\tdir: /not-an-fs\nfs:\n\tdir: /data\n")
    assert commands.fs_dirs(info) == {"/iso": "/opt/iso", "/data": ""}
    assert commands.fs_dirs("") == {}
