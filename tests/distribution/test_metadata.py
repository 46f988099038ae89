"""The package's metadata, checked against the code without building anything.

Every third-party library `vmd/` imports is a declared dependency, and the installed
version (the one the suite runs against) satisfies the declared range, so each lower bound
is a tested one; one version source; the shipped deploy files exist where setup.py takes
them from; `vmd systemd install` rewrites ExecStart= and refuses a home directory.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import vmd
from vmd.cli import deploy

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def imported_top_level() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "vmd").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {name for name in found if name != "vmd" and name not in sys.stdlib_module_names}


def declared() -> dict[str, Requirement]:
    reqs = (Requirement(text) for text in PROJECT["dependencies"])
    return {canonicalize_name(req.name): req for req in reqs}


def test_every_imported_library_is_declared() -> None:
    providers = md.packages_distributions()
    deps = declared()
    missing = {}
    for module in sorted(imported_top_level()):
        dists = {canonicalize_name(d) for d in providers.get(module, [module])}
        if not dists & deps.keys():
            missing[module] = sorted(dists)
    assert not missing, f"imported by vmd/ but not in [project] dependencies: {missing}"
    assert "aiormq" in deps


@pytest.mark.parametrize("name", sorted(declared()))
def test_the_installed_version_is_in_the_declared_range(name: str) -> None:
    req = declared()[name]
    installed = md.version(req.name)
    assert req.specifier.contains(installed, prereleases=True), (req, installed)
    assert any(spec.operator == ">=" for spec in req.specifier), f"{req}: no lower bound"


def test_one_version_source() -> None:
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert PROJECT["name"] != "vmd"  # the name on PyPI belongs to another project
    assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert all(url.startswith("https://") for url in PROJECT["urls"].values())
    assert vmd.__version__.count(".") >= 2
    assert (ROOT / "vmd" / "py.typed").is_file()


def test_shipped_files_are_the_checkouts() -> None:
    names = {str(path) for path in deploy.shipped(ROOT)}
    assert {"config/vmd.toml", "config/api.toml", "systemd/vmd.service",
            "systemd/vmd-api.service", "systemd/vmd-agent.service",
            "systemd/vmd-agent@.service", "systemd/sysusers.d/vmd.conf"} <= names


def test_install_points_the_units_at_this_vmd(tmp_path: Path) -> None:
    exe = Path("/opt/vmd/bin/vmd")
    written = deploy.install(tmp_path, exe)
    units = sorted(p.name for p in written if p.suffix == ".service")
    assert units == sorted(p.name for p in (ROOT / "systemd").glob("*.service"))
    for path in written:
        text = path.read_text()
        assert deploy.UNIT_EXEC not in text
        if path.suffix == ".service":
            assert f"ExecStart={exe} " in text
    assert (tmp_path / "etc/sysusers.d/vmd.conf").read_text() == (
        ROOT / "systemd/sysusers.d/vmd.conf").read_text()
    assert not (tmp_path / "etc/vmd").exists()  # settings are the operator's


@pytest.mark.parametrize("exe", ["/root/.local/bin/vmd", "/home/op/venv/bin/vmd", "bin/vmd"])
def test_install_refuses_a_path_the_units_cannot_run(tmp_path: Path, exe: str) -> None:
    with pytest.raises(deploy.DeployError):
        deploy.install(tmp_path, Path(exe))
    assert not list(tmp_path.iterdir())


def test_paths_names_one_file_or_refuses() -> None:
    (path,) = deploy.paths(["vmd.service"])
    assert path.name == "vmd.service" and path.is_file()
    with pytest.raises(deploy.DeployError, match="not a shipped file"):
        deploy.paths(["nope.service"])
