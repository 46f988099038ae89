"""Entry points of the vmadm simulator: `vmd-vmadm`, `vmd-vmadm-ctl` and `vmd-zonecfg`.

Thin wrappers: each invocation is a short-lived process, so nothing but the
simulator package (stdlib only) is imported.
"""

from __future__ import annotations


def vmadm_main(argv: list[str] | None = None) -> int:
    from vmd.sim.vmadm import main

    return main(argv)


def ctl_main(argv: list[str] | None = None) -> int:
    from vmd.sim.ctl import main

    return main(argv)


def zonecfg_main(argv: list[str] | None = None) -> int:
    from vmd.sim.zonecfg import main

    return main(argv)
