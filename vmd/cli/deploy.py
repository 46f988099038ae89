"""`vmd systemd paths|install`: the files a deployment needs, from the installed package.

Why this exists: an operator who installed the wheel (into a venv or with pipx) has no
checkout, yet needs the systemd units, the sysusers file and the config templates. The
wheel carries them in `vmd/_deploy/` (setup.py copies `config/` and `systemd/` there at
build time); an editable install or a checkout reads them from the repository itself.

- `vmd systemd paths [FILE...]` prints where each shipped file is (one absolute path a
  line), e.g. `cp "$(vmd systemd paths config/vmd.toml)" /etc/vmd/vmd.toml`.
- `vmd systemd install [--root DIR] [--exec PATH]` writes the units into
  `DIR/etc/systemd/system/` and the sysusers file into `DIR/etc/sysusers.d/`, with each
  unit's `ExecStart=` pointing at this installation's `vmd`; then it prints the next steps.
  Config files are never written: they hold secrets and are the operator's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import vmd

# The path of `vmd` the shipped units name; install replaces it with the real one.
UNIT_EXEC = "/usr/local/bin/vmd"
UNITS_DIR = Path("etc/systemd/system")
SYSUSERS_DIR = Path("etc/sysusers.d")
# ProtectHome=yes in the units hides these: a `vmd` under them cannot be started.
_HIDDEN = (Path("/home"), Path("/root"), Path("/run/user"))


class DeployError(Exception):
    """One line for the operator (exit 2)."""


def deploy_root() -> Path:
    """The folder holding `config/` and `systemd/`: the wheel's copy, else the checkout."""
    package = Path(vmd.__file__).resolve().parent
    for root in (package / "_deploy", package.parent):
        if (root / "systemd" / "vmd.service").is_file():
            return root
    raise DeployError(f"no systemd units found in {package / '_deploy'} (a broken install?)")


def shipped(root: Path | None = None) -> list[Path]:
    """Every shipped file, relative to `deploy_root()`, in a stable order."""
    base = deploy_root() if root is None else root
    found = [*sorted((base / "config").glob("*.toml")),
             *sorted((base / "systemd").glob("*.service")),
             *sorted((base / "systemd" / "sysusers.d").glob("*.conf"))]
    return [path.relative_to(base) for path in found]


def paths(names: list[str]) -> list[Path]:
    """Absolute paths of the named shipped files (all of them when `names` is empty)."""
    root = deploy_root()
    files = shipped(root)
    if not names:
        return [root / name for name in files]
    known = {str(name): name for name in files}
    by_base = {name.name: name for name in files}
    chosen = []
    for name in names:
        match = known.get(name) or by_base.get(name)
        if match is None:
            raise DeployError(f"{name}: not a shipped file (one of: {', '.join(known)})")
        chosen.append(root / match)
    return chosen


def default_exec() -> Path:
    """This installation's `vmd` (the console script beside this interpreter)."""
    beside = Path(sys.executable).parent / "vmd"
    if beside.is_file():
        return beside
    found = shutil.which("vmd")
    if found is None:
        raise DeployError("cannot find this installation's vmd command: pass --exec PATH")
    return Path(found)


def install(root: Path, exec_path: Path) -> list[Path]:
    """Write the units (ExecStart= -> `exec_path`) and the sysusers file under `root`."""
    if not exec_path.is_absolute():
        raise DeployError(f"--exec {exec_path}: must be an absolute path")
    if any(exec_path.is_relative_to(hidden) for hidden in _HIDDEN):
        raise DeployError(f"{exec_path} is under a home directory, which the units hide "
                          "(ProtectHome=yes): install vmd into e.g. /opt/vmd (README)")
    source = deploy_root()
    written = []
    for name in shipped(source):
        if name.parts[0] != "systemd":
            continue
        if name.suffix == ".service":
            dest = root / UNITS_DIR / name.name
            text = (source / name).read_text().replace(UNIT_EXEC, str(exec_path))
        else:
            dest = root / SYSUSERS_DIR / name.name
            text = (source / name).read_text()
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        os.replace(tmp, dest)
        written.append(dest)
    return written


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    text = "the shipped systemd units, sysusers file and config templates"
    cmd = sub.add_parser("systemd", help=text, description=text)
    actions = cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    shown = actions.add_parser(
        "paths", help="print where the shipped files are",
        description="print the absolute path of each shipped file, or of the named ones "
                    "(e.g. config/vmd.toml or vmd.service)")
    shown.add_argument("names", nargs="*", metavar="FILE")
    put = actions.add_parser(
        "install", help="install the units and the sysusers file",
        description="write the units into ROOT/etc/systemd/system and the sysusers file "
                    "into ROOT/etc/sysusers.d, ExecStart= pointing at this vmd; config "
                    "files are never written")
    put.add_argument("--root", type=Path, default=Path("/"), metavar="DIR",
                     help="install below DIR (default: /)")
    put.add_argument("--exec", dest="exec_path", type=Path, metavar="PATH",
                     help="the vmd command the units run (default: this installation's)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "paths":
            for path in paths(args.names):
                print(path)
            return 0
        written = install(args.root, args.exec_path or default_exec())
    except (DeployError, OSError) as exc:
        print(f"vmd systemd: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"installed {path}")
    print("next: systemd-sysusers; systemctl daemon-reload; put the settings in /etc/vmd "
          "(vmd systemd paths config/vmd.toml); vmd check -c FILE; "
          "systemctl enable --now vmd (docs/operations.md)")
    return 0
