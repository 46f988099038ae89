"""The redelivery memo: answers of requests without a `message_id`, for their redelivery.

A request that may change something but carries no `message_id` has no idempotency record
(protocol.md §5). Redelivered after a lost connection, it is matched by `(user_id,
correlation_id, body digest)` against the answers of the last `MEMO_SIZE` such requests of
this process (vmd.daemon.intake), so a connection cut does not run it twice. Only this
process's: after a restart such a request is executed again (docs/daemon.md).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from vmd.model import Reply

# Answers of requests without a message_id remembered for a redelivery (several prefetch
# windows' worth; a redelivery follows a reconnect within seconds).
MEMO_SIZE = 4096

MemoKey = tuple[str, str, bytes]  # (user_id, correlation_id, the body's digest)


def key_of(user: str, correlation_id: str, body: bytes) -> MemoKey:
    # A digest, not the body: 4096 bodies of up to 64 KiB would be 256 MiB (found by the
    # fault suite's fuzzer, docs/reliability.md). Reads are not remembered: a redelivered
    # one is answered afresh, and 4096 lists of up to 2,000 VMs (~2 MB each) would be
    # gigabytes.
    return (user, correlation_id, hashlib.blake2b(body, digest_size=16).digest())


class Memo:
    """The last answers to requests without a message_id, for their redelivery."""

    __slots__ = ("_answers",)

    def __init__(self) -> None:
        self._answers: OrderedDict[MemoKey, Reply] = OrderedDict()

    def put(self, key: MemoKey, reply: Reply) -> None:
        answers = self._answers
        answers[key] = reply
        if len(answers) > MEMO_SIZE:
            answers.popitem(last=False)

    def get(self, key: MemoKey) -> Reply | None:
        return self._answers.get(key)
