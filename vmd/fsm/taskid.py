"""Task ids (vm-status.md §7): `<shard>-` + the first 23 characters of a random UUID4.

A tiny module of its own so that the daemon, the decision procedure and tests share one
generator, and the fsm can take it as an injected callable (deterministic ids in tests).

`uuid.uuid4()` costs ~6 µs on the target machine, more than half a decision's budget, so the
factory draws 80 bits from a private `random.Random` seeded from `os.urandom` (~1 µs) and
sets the UUID4 version nibble (`4`) and variant bits (`8`-`b`) at the places they have in
a real UUID4, so the ids look exactly like the seed's `0-a2327793-2600-423d-9f07`.
The ids are names, not secrets: who may read a task is checked on every lookup.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable

from vmd.model import TaskId

# hex digit 12 of the 20 (bits 28..31) is the UUID version; digit 16 (bits 12..15) holds
# the variant in its two top bits.
_CLEAR = ~((0xF << 28) | (0xC << 12)) & ((1 << 80) - 1)
_SET = (0x4 << 28) | (0x8 << 12)

TASK_ID_RE = re.compile(r"\d+-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}")


def task_id_factory(shard: int = 0, *, seed: int | None = None) -> Callable[[], TaskId]:
    """A callable returning a fresh task id of `shard` on every call.

    `seed` makes the sequence reproducible (tests only).
    """
    if shard < 0:
        raise ValueError(f"shard must be >= 0, got {shard}")
    rng = random.Random(os.urandom(32) if seed is None else seed)
    bits = rng.getrandbits
    prefix = f"{shard}-"

    def new_task_id() -> TaskId:
        h = "%020x" % (bits(80) & _CLEAR | _SET)
        return TaskId(f"{prefix}{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:]}")

    return new_task_id


def is_task_id(text: str) -> bool:
    """Whether `text` has the shape of a task id (any shard)."""
    return TASK_ID_RE.fullmatch(text) is not None
