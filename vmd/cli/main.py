"""`vmd`: the service's entry point (`vmd daemon`, `vmd agent`)."""

from __future__ import annotations

import argparse
import sys

from vmd import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vmd", description="VM power-state service")
    parser.add_argument("--version", action="version", version=f"vmd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("daemon", "run the controller: state machines, intake, tasks, events"),
        ("agent", "run a node agent: vmadm locally or over SSH"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("-c", "--config", required=True, metavar="FILE", help="TOML file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    print(f"vmd {args.command}: not implemented yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
