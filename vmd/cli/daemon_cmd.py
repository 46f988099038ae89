"""`vmd daemon -c FILE`: load the settings and run the daemon until SIGTERM.

Exit codes: 0 after a drain (SIGTERM/SIGINT); 2 for a configuration problem (one line on
stderr; systemd does not restart on it: RestartPreventExitStatus=2) or a store file the
operator must fix; 1 when the broker cannot be reached at start (systemd restarts the unit).
The values are `vmd.cli.runtime.ExitCode`; the signals are handled there too.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vmd import config
from vmd.cli.runtime import ExitCode, run_until_signalled, tune_gc
from vmd.obs.logging import configure_logging, stderr_text


def run(config_path: Path) -> int:
    try:
        settings = config.load(config_path, sections=("broker", "daemon"))
    except config.ConfigError as exc:
        print(stderr_text(f"vmd daemon: {exc}"), file=sys.stderr)
        return ExitCode.CONFIG
    configure_logging(settings.log.level, settings.log.format)
    tune_gc()
    # Imported after the settings are valid: a typo in the file costs no heavy imports.
    from vmd.daemon.runner import serve

    return run_until_signalled(lambda stop, hurry: serve(settings, stop=stop, hurry=hurry))
