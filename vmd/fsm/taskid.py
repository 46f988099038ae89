"""Task ids (docs/fsm.md §7): `<shard>-` + the first 23 characters of a random UUID4.

A tiny module of its own so that the daemon, the decision procedure and tests share one
generator, and the fsm can take it as an injected callable (deterministic ids in tests).

The 80 random bits come from the operating system's CSPRNG (`secrets.randbits`): a task id
is a name anyone who sees it may look up (who may read the task is checked on every lookup),
but it must not be guessable from the ids one saw before, which a `random.Random` (Mersenne
Twister: its state follows from 624 outputs) would allow (issue 12). Measured: ~1.2 µs an
id (0.6 µs with `random.Random`, 6 µs with `uuid.uuid4()`). The UUID4 version nibble (`4`)
and variant bits (`8`-`b`) are set at the places they have in a real UUID4, so the ids look
exactly like upstream's `0-a2327793-2600-423d-9f07`.

Every synchronous answer (the list, a VM's status, a 400 FAILURE) carries a fresh id of no
task, as upstream's dummy ids (docs/protocol.md §3, the public contract): drawn from the
CSPRNG, handing them out tells an owner nothing about the ids of other owners' tasks.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

from vmd.model import TaskId

# hex digit 12 of the 20 (bits 28..31) is the UUID version; digit 16 (bits 12..15) holds
# the variant in its two top bits.
_CLEAR = ~((0xF << 28) | (0xC << 12)) & ((1 << 80) - 1)
_SET = (0x4 << 28) | (0x8 << 12)

TASK_ID_RE = re.compile(r"\d+-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}")


def task_id_factory(
    shard: int = 0, *, randbits: Callable[[int], int] = secrets.randbits
) -> Callable[[], TaskId]:
    """A callable returning a fresh task id of `shard` on every call.

    `randbits(k)` is the source of random bits; tests pass a seeded `random.Random`'s
    `getrandbits` for a reproducible sequence.
    """
    if shard < 0:
        raise ValueError(f"shard must be >= 0, got {shard}")
    bits = randbits
    prefix = f"{shard}-"

    def new_task_id() -> TaskId:
        h = "%020x" % (bits(80) & _CLEAR | _SET)
        return TaskId(f"{prefix}{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:]}")

    return new_task_id


def is_task_id(text: str) -> bool:
    """Whether `text` has the shape of a task id (any shard)."""
    return TASK_ID_RE.fullmatch(text) is not None
