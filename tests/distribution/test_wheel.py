"""The wheel as an operator gets it: built from the source tree, installed into a fresh
venv, its console scripts run from there, its deploy files found inside the package.

The venv gets the wheel alone (`--no-deps`); the dependencies come from this suite's venv
through a `.pth` line (no download, and this checkout's `vmd` is not on that path: its
editable finder is loaded only by a `.pth` file, which a path line does not process).
Building needs the build backend from PyPI (pip's build isolation), like any user's build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

import vmd

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ("vmd", "vmctl", "vmd-vmadm", "vmd-vmadm-ctl", "vmd-zonecfg")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _copy_source(dest: Path) -> Path:
    """The tree a user would build from, without this checkout's venv, caches or metadata
    (the build writes build/ and *.egg-info next to the sources: not in the shared tree)."""
    ignore = shutil.ignore_patterns(".venv", ".git", "*.egg-info", "__pycache__", "build",
                                    "dist", ".*_cache", "demo-state", ".hypothesis")
    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = _copy_source(work / "src")
    wheels = work / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(wheels), str(source)], check=True, timeout=240)
    (wheel,) = wheels.glob("*.whl")
    target = work / "venv"
    venv.create(target, with_pip=False)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(target),
                                                       "platbase": str(target)}))
    ours = Path(sysconfig.get_path("purelib"))
    (purelib / "_suite_deps.pth").write_text(f"{ours}\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"),
                    "install", "--no-deps", "--no-index", "-q", str(wheel)], check=True,
                   timeout=120)
    return target


def run(venv_dir: Path, *args: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("PYTHON", "VIRTUAL_ENV", "VMADM_SIM"))}
    env = {**clean, **(env or {}), "PATH": f"{venv_dir / 'bin'}:/usr/bin:/bin"}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60,
                          cwd=venv_dir, check=False)


def test_the_wheel_carries_the_package_data(installed: Path) -> None:
    wheel = next((installed.parent / "wheels").glob("vmd_power-*.whl"))
    assert wheel.name.startswith(f"vmd_power-{vmd.__version__}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("vmd/py.typed", "vmd/_deploy/systemd/vmd.service",
                 "vmd/_deploy/systemd/vmd-api.service", "vmd/_deploy/systemd/sysusers.d/vmd.conf",
                 "vmd/_deploy/config/vmd.toml", "vmd/client/__init__.py"):
        assert name in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "bench/", "scripts/")) for n in names)


def test_the_console_scripts_run_from_the_venv(installed: Path) -> None:
    where = run(installed, "python", "-c", "import vmd, importlib.metadata as m; "
                "print(vmd.__file__); print(m.version('vmd-power'))")
    assert where.returncode == 0, where.stderr
    path, version = where.stdout.split()
    assert Path(path).is_relative_to(installed), path  # not this checkout's vmd
    assert version == vmd.__version__
    for script in ("vmd", "vmctl", "vmd-vmadm-ctl"):
        done = run(installed, str(installed / "bin" / script), "--help")
        assert done.returncode == 0, (script, done.stderr)
        assert "usage" in done.stdout.lower(), (script, done.stdout)
    # The simulator answers like the real tools (vmadm has no --help): a real call each.
    node = installed / "sim-node"
    node.mkdir(exist_ok=True)
    done = run(installed, "vmd-vmadm", "list", env={"VMADM_SIM_ROOT": str(node)})
    assert done.returncode == 0 and done.stdout.startswith("UUID"), done
    done = run(installed, "vmd-zonecfg", "-z", "nosuch", "info",
               env={"VMADM_SIM_ROOT": str(node)})
    assert done.returncode == 1 and "No such zone configured" in done.stderr, done
    assert all((installed / "bin" / script).is_file() for script in SCRIPTS)
    done = run(installed, "vmd", "--version")
    assert done.stdout.strip() == f"vmd {vmd.__version__}", done
    done = run(installed, "vmctl", "--version")
    assert vmd.__version__ in done.stdout, done


def test_the_installed_vmd_installs_its_units(installed: Path, tmp_path: Path) -> None:
    shown = run(installed, "vmd", "systemd", "paths")
    assert shown.returncode == 0, shown.stderr
    files = [Path(line) for line in shown.stdout.splitlines()]
    assert files and all(f.is_file() and f.is_relative_to(installed) for f in files)
    done = run(installed, "vmd", "systemd", "install", "--root", str(tmp_path),
               "--exec", "/opt/vmd/bin/vmd")
    assert done.returncode == 0, done.stderr
    unit = (tmp_path / "etc/systemd/system/vmd.service").read_text()
    assert "ExecStart=/opt/vmd/bin/vmd daemon -c /etc/vmd/vmd.toml" in unit
    assert (tmp_path / "etc/sysusers.d/vmd.conf").is_file()
    config = run(installed, "vmd", "systemd", "paths", "config/vmd.toml")
    assert config.returncode == 0 and config.stdout.strip().endswith("_deploy/config/vmd.toml")
    # Installed with the default ExecStart= (this venv's vmd), the units verify as they are.
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        root = tmp_path / "default"
        assert run(installed, "vmd", "systemd", "install", "--root", str(root)).returncode == 0
        units = sorted((root / "etc/systemd/system").glob("*.service"))
        assert f"ExecStart={installed / 'bin' / 'vmd'} " in units[0].read_text()
        done = subprocess.run([analyze, "verify", *map(str, units)], capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr


def test_the_installed_vmd_prints_templates_its_check_accepts(installed: Path,
                                                               tmp_path: Path) -> None:
    for process in ("daemon", "agent", "agent-ssh", "api"):
        shown = run(installed, "vmd", "config", "example", process)
        assert shown.returncode == 0, (process, shown.stderr)
        path = tmp_path / f"{process}.toml"
        path.write_text(shown.stdout)
        # --no-paths: the templates name a real node's files (/etc/vmd/known_hosts, /iso).
        checked = run(installed, "vmd", "check", "-c", str(path), "--no-paths")
        assert checked.returncode == 0, (process, checked.stderr)
