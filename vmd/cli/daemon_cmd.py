"""`vmd daemon -c FILE`: load the settings and run the daemon until SIGTERM."""

from __future__ import annotations

import sys
from pathlib import Path


def run(config: Path) -> int:
    print(f"vmd daemon: not implemented yet ({config})", file=sys.stderr)
    return 2
