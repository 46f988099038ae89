"""`vmd api -c FILE`: load the settings and run the HTTP gateway until SIGTERM.

Configuration problems and start failures are one line on stderr: exit 2 when restarting
cannot help (bad file, no impersonator tag, address in use), 1 otherwise (broker down)
(`vmd.cli.runtime.ExitCode`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from vmd.cli.runtime import ExitCode, run_until_signalled
from vmd.config import ConfigError, load
from vmd.obs.logging import stderr_text


def run(config: Path) -> int:
    try:
        settings = load(config, sections=("api",))
    except ConfigError as exc:
        print(stderr_text(f"vmd api: {exc}"), file=sys.stderr)
        return ExitCode.CONFIG
    assert settings.api is not None
    # Imported after the settings are known good: the gateway's stack (aiohttp) is heavy.
    from vmd.api import StartError
    from vmd.api import run as serve
    from vmd.obs.logging import configure_logging

    configure_logging(settings.log.level, settings.log.format)
    try:
        api = settings.api
        return run_until_signalled(lambda stop, _hurry: serve(api, stop))
    except StartError as exc:
        print(stderr_text(f"vmd api: {exc}"), file=sys.stderr)
        return exc.exit_code
