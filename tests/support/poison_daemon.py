"""`vmd` with one internal bug planted, for tests/daemon/test_delivery_limit.py.

The process SIGKILLs itself while it handles a request whose body holds `"poison"`: what a
bug nothing can catch does to the daemon (a crash in C code, the OOM killer, the watchdog).
The planted bug sits behind the delivery guard (vmd.daemon.poison), as any bug in the
intake would. Test-only: it patches the intake in this process and runs `vmd` as usual.

    python tests/support/poison_daemon.py daemon -c vmd.toml
"""

from __future__ import annotations

import os
import signal
import sys

from vmd.bus import Delivery
from vmd.cli.main import main
from vmd.daemon.intake import Intake

_handle = Intake.handle


async def _killing_handle(self: Intake, delivery: Delivery) -> None:
    if b'"poison"' in delivery.body:
        os.kill(os.getpid(), signal.SIGKILL)
    await _handle(self, delivery)


Intake.handle = _killing_handle  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
