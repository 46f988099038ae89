"""Who may do what: AMQP users mapped to principals from `[auth]` (protocol.md §1), and
node agents' users mapped to the nodes they report for (`[auth.agents]`).

The broker validates `user_id` against the connection's user, so the name is trusted; this
module only says what that name may do. An admin sees and commands every VM; an owner only
the VMs of its `owner_uuid`s. A user in both lists is an admin (who also owns its uuids).
A user in neither is refused with 403 by the intake.
"""

from __future__ import annotations

from vmd.config import AuthSettings
from vmd.model import Principal


class Principals:
    """`get(user)` → the `Principal`, or None for a user the configuration does not know."""

    __slots__ = ("_by_user",)

    def __init__(self, auth: AuthSettings) -> None:
        by_user: dict[str, Principal] = {}
        for user, uuids in auth.owners.items():
            by_user[user] = Principal(user, admin=False, owner_uuids=uuids)
        for user in auth.admins:
            owned = auth.owners.get(user, frozenset())
            by_user[user] = Principal(user, admin=True, owner_uuids=owned)
        self._by_user = by_user

    def get(self, user: str) -> Principal | None:
        return self._by_user.get(user)

    def __len__(self) -> int:
        return len(self._by_user)


class AgentUsers:
    """Which broker users may report for which nodes (`[auth.agents]`, docs/security.md).

    Like a request's, a report's `user_id` is validated by the broker, so the name is
    trusted; this says which nodes that name speaks for. A user in no list speaks for none.
    """

    __slots__ = ("_nodes",)

    def __init__(self, auth: AuthSettings) -> None:
        self._nodes = dict(auth.agents)

    def may_report(self, user: str | None, node: str) -> bool:
        return user is not None and node in self._nodes.get(user, ())

    def known(self, user: str | None) -> bool:
        return user is not None and user in self._nodes
