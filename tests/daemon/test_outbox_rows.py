"""The outbox replays the very messages it stored (vmd.daemon.outbox): an event or a final
reply of stream mode goes through its row (and the store's encoding of the row) and comes
back equal, field for field, to what vmd.bus's builder made, so the replay after a crash
publishes the same bytes, routing, headers and properties as the first publish would have.
"""

from __future__ import annotations

import pytest

from vmd.bus import Event, Outgoing, reply_message
from vmd.daemon.outbox import replayed, stored
from vmd.model import Reply
from vmd.store import EVENT, REPLY
from vmd.store.outbox import outbox_from_row, outbox_row


@pytest.mark.parametrize(("kind", "message"), [
    pytest.param(EVENT, Event("vm.o.u.status_change", {"seq": 3, "status": "running"})
                 .outgoing(), id="event"),
    pytest.param(REPLY, reply_message("amq.gen-x", "cid-1",
                                      Reply(200, {"status": "SUCCESS", "task_id": "t"})),
                 id="final-reply"),
    pytest.param(REPLY, reply_message("alice.replies", None, Reply(410, {"status": "REVOKED"})),
                 id="final-reply-without-correlation-id"),
])
def test_a_stored_message_is_replayed_as_it_was_built(kind: str, message: Outgoing) -> None:
    row = outbox_from_row(outbox_row(stored(7, kind, message)))
    assert (row.id, row.kind) == (7, kind)
    assert replayed(row) == message
