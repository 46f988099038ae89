"""The bus's own exceptions, so that no caller ever has to catch an aio-pika or aiormq type.

Every message is one line a user can read (vmctl prints it as is). The split follows what a
caller can do about it: `ConnectFailed` at start (check the URL, the broker); the
`PublishFailed` family for one publish (the message was not, or maybe not, accepted: keep
the request unacked so it is redelivered); `RpcTimeout` and `ReplyLost` for a request whose
answer did not come; `BusFailed` when the link gave up for good (a topology conflict, a
permission problem): the process should exit and be restarted after a fix.
"""

from __future__ import annotations


class BusError(Exception):
    """Base of every error raised by `vmd.bus`."""


class ConnectFailed(BusError):
    """The first connection could not be made (broker down, bad URL or credentials).

    Besides the message: `refusal` says what failed (`"login"`: user or password refused,
    `"vhost"`: the vhost does not exist or the user has no permissions on it,
    `"unreachable"`: no broker answered) and `reason` why, in a word (`ACCESS_REFUSED`,
    `NOT_ALLOWED`, `connection refused`, `unknown host`, `no answer within 5s`, ...), so a
    command-line tool can say it in its own words (vmctl does).
    """

    def __init__(self, message: str, *, refusal: str = "unreachable", reason: str = "") -> None:
        super().__init__(message)
        self.refusal = refusal
        self.reason = reason or message


class BusClosed(BusError):
    """The bus was closed by its owner; nothing more can be published or consumed."""


class BusFailed(BusError):
    """The link stopped for good: a non-transient error while (re)declaring or consuming."""


class PublishFailed(BusError):
    """A message was not confirmed by the broker. Subclasses say why."""


class NotConnected(PublishFailed):
    """No connection to the broker within the publish timeout: the message was not sent."""


class PublishTimeout(PublishFailed):
    """Sent, but no confirm within the publish timeout: it may or may not have been routed."""


class ConnectionLost(PublishFailed):
    """The connection dropped before the confirm: it may or may not have been routed."""


class Unroutable(PublishFailed):
    """A mandatory message was returned: no queue is bound for its routing key."""


class PublishRefused(PublishFailed):
    """The broker refused the message (nack, or it closed the channel, e.g. forged user_id)."""


class RpcTimeout(BusError):
    """No reply to a request within its timeout."""


class ReplyLost(BusError):
    """The connection dropped while waiting for a reply (Direct Reply-to replies are lost)."""
