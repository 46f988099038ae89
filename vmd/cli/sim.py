"""Entry points of the vmadm simulator: `vmd-vmadm` and `vmd-vmadm-ctl`."""

from __future__ import annotations

import sys


def vmadm_main(argv: list[str] | None = None) -> int:
    print("vmd-vmadm: not implemented yet", file=sys.stderr)
    return 2


def ctl_main(argv: list[str] | None = None) -> int:
    print("vmd-vmadm-ctl: not implemented yet", file=sys.stderr)
    return 2
