"""`vmd agent -c FILE`: load the settings and run the agent until SIGTERM."""

from __future__ import annotations

import sys
from pathlib import Path


def run(config: Path) -> int:
    print(f"vmd agent: not implemented yet ({config})", file=sys.stderr)
    return 2
