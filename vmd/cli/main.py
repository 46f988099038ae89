"""`vmd`: the service's entry point (`vmd daemon`, `vmd agent`, `vmd api`, `vmd check`,
`vmd config`, `vmd systemd`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vmd import __version__
from vmd.cli import check, config_cmd, deploy


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vmd", description="VM power-state service")
    parser.add_argument("--version", action="version", version=f"vmd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("daemon", "run the controller: state machines, intake, tasks, events"),
        ("agent", "run a node agent: vmadm locally or over SSH"),
        ("api", "run the HTTP gateway: Danube Cloud's REST API over the broker"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("-c", "--config", required=True, metavar="FILE", help="TOML file")
    text = "validate a settings file: every problem on its own line, exit 0 when valid, 2 if not"
    cmd = sub.add_parser("check", help=text, description=text)
    cmd.add_argument("-c", "--config", required=True, metavar="FILE", help="TOML file")
    cmd.add_argument("--for", dest="role", choices=sorted(check.ROLES),
                     help="require the sections of this process (default: either)")
    cmd.add_argument("--no-paths", dest="check_paths", action="store_false",
                     help="do not check that the files and commands named exist on this "
                          "machine (for a file meant for another machine)")
    config_cmd.add_parser(sub)
    deploy.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        return check.run(Path(args.config), args.role, check_paths=args.check_paths)
    if args.command == "config":
        return config_cmd.run(args)
    if args.command == "systemd":
        return deploy.run(args)
    # Imported lazily: each process loads only its own stack.
    if args.command == "daemon":
        from vmd.cli import daemon_cmd

        return daemon_cmd.run(Path(args.config))
    if args.command == "agent":
        from vmd.cli import agent_cmd

        return agent_cmd.run(Path(args.config))
    if args.command == "api":
        from vmd.cli import api_cmd

        return api_cmd.run(Path(args.config))
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
