"""A running store whose database connection goes away raises `StoreUnavailable`, one line.

The daemon maps it to a one-line exit 1 (restarted by systemd, a standby first: docs/ha.md),
not a crash with a traceback nor the exit 2 of a configuration error. Ended here the way a
takeover ends a frozen leader's session and a server restart ends every session: the
server terminates the store's backend (pg_terminate_backend, SQLSTATE 57P01).
"""

from __future__ import annotations

import psycopg
import pytest
from support.store import put

from vmd.model import Node, NodeName, NodeStatus
from vmd.store import Store, StoreError, StoreUnavailable


def _terminate(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as other:
        row = other.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def test_a_terminated_session_is_store_unavailable_in_one_line(pg_store_url: str) -> None:
    node = Node(name=NodeName("node1"), status=NodeStatus.ONLINE)
    with Store.open(pg_store_url) as store:
        put(store, node)
        assert _terminate(pg_store_url) == 1
        with pytest.raises(StoreUnavailable) as caught:
            put(store, node)
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(f"{store.path}: store connection lost: ")
        # Not the operator's configuration: that is StoreError (exit 2, not restarted).
        assert not isinstance(caught.value, StoreError)
        # Reads fail the same way: the store does not reconnect behind the daemon's back.
        with pytest.raises(StoreUnavailable):
            store.get_node(NodeName("node1"))
    # What was committed before the session ended is there for the next daemon.
    with Store.open(pg_store_url) as again:
        assert again.get_node(NodeName("node1")) == node
