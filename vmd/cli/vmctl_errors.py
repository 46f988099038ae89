"""vmctl's one line for a broker that refused it or could not be reached.

`vmd.bus` says what failed (`ConnectFailed.refusal`: the login, the vhost, or no answer) and
why in a word (`ConnectFailed.reason`); this says it in a user's terms, naming the user or
the address and where the URL came from (`-u`, `VMD_URL`, `VMD_URL_FILE`, the config file):
`the broker refused user alice: ACCESS_REFUSED (check VMD_URL)`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from vmd.client import BusError, BusSettings, ConnectFailed


def broker_error(exc: BusError, settings: BusSettings, origin: str) -> str:
    """One line for a failed connect, in the user's terms: who was refused, or which
    address did not answer, and where the URL came from."""
    if not isinstance(exc, ConnectFailed):
        return str(exc)
    if origin == "the default URL":
        check = f"no URL given, the default {settings.redacted_url} was used: set VMD_URL"
    else:
        check = f"check {origin}"
    if exc.refusal == "login":
        return f"the broker refused user {settings.user}: {exc.reason} ({check})"
    if exc.refusal == "vhost":
        return (f"the broker refused user {settings.user} on vhost {settings.vhost!r}: "
                f"{exc.reason}, the vhost does not exist or the user has no permissions on "
                f"it ({check})")
    parts = urlsplit(settings.url)
    where = f"{parts.hostname}:{parts.port or (5671 if parts.scheme == 'amqps' else 5672)}"
    return f"cannot reach the broker at {where}: {exc.reason} ({check})"
