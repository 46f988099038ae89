"""`vmd config example {daemon|agent|agent-ssh|api}`: print a commented settings template.

Why: an operator who installed the wheel has no checkout to copy `config/vmd.toml` from.
`vmd config example daemon > /etc/vmd/vmd.toml` writes a file that `vmd check` accepts,
every key shown with its default and a comment (what it does, its range), the keys an
operator must change marked "Required" or "example".

The templates are the repository's config/*.toml, shipped in the wheel under vmd/_deploy/
(setup.py; vmd.cli.deploy finds them in either place). tests/test_config_examples.py keeps
them in step with the schema (vmd.settings.schema): every key of every section present,
every value the default unless its comment says otherwise, and each accepted by `vmd check`.
"""

from __future__ import annotations

import argparse
import sys

from vmd.cli import deploy

# What a process runs -> its template in config/.
EXAMPLES = {
    "daemon": "vmd.toml",
    "agent": "agent-local.toml",
    "agent-ssh": "agent-ssh.toml",
    "api": "api.toml",
}


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    text = "settings files: print a commented template"
    cmd = sub.add_parser("config", help=text, description=text)
    actions = cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    shown = actions.add_parser(
        "example", help="print the commented settings template of a process",
        description="print a commented settings template to stdout, every key with its "
                    "default (e.g. vmd config example daemon > /etc/vmd/vmd.toml); "
                    "agent runs vmadm on the node itself, agent-ssh over SSH")
    shown.add_argument("process", choices=list(EXAMPLES), metavar="PROCESS",
                       help=f"one of {', '.join(EXAMPLES)}")


def run(args: argparse.Namespace) -> int:
    try:
        (path,) = deploy.paths([f"config/{EXAMPLES[args.process]}"])
        text = path.read_text()
    except (deploy.DeployError, OSError) as exc:
        print(f"vmd config: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0
