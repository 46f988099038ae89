"""Who is calling: the API key of an HTTP request, mapped to the principal it speaks for.

Danube Cloud's clients authenticate in one of two ways, and the gateway accepts both:
`ES-API-KEY: <key>` (the `es` tool with `-api-key` or `$ES_API_KEY`, scripts) and
`Authorization: Token <key>` (what `es` sends after `es login`). Upstream tries them in that
order (api/accounts/base/authentication.py, api/authentication.py) and so does this module;
its answers are upstream's, with upstream's 401 coerced to 403 (Danube Cloud's `api/` views):

| request                            | answer (403 `{"detail": ...}`)                        |
|------------------------------------|--------------------------------------------------------|
| neither header (or another scheme) | `Authentication credentials were not provided.`        |
| `ES-API-KEY` not configured        | `Invalid API key`                                      |
| `Authorization: Token` alone       | `Invalid token header. No credentials provided.`       |
| `Authorization: Token a b`         | `Invalid token header. Token string should not ...`    |
| `Authorization: Token <unknown>`   | `Invalid token.`                                       |

Only the key's SHA-256 digest is kept: a lookup's timing then says nothing about how much of
a guessed key was right, and no key sits in memory in clear for a dump or a repr to show.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from vmd.model import Reply

API_KEY_HEADER = "ES-API-KEY"
AUTHORIZATION_HEADER = "Authorization"
TOKEN_KEYWORD = "token"

NOT_AUTHENTICATED = "Authentication credentials were not provided."
INVALID_API_KEY = "Invalid API key"
INVALID_TOKEN = "Invalid token."
TOKEN_WITHOUT_CREDENTIALS = "Invalid token header. No credentials provided."
TOKEN_WITH_SPACES = "Invalid token header. Token string should not contain spaces."

FORBIDDEN = 403


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _refused(detail: str) -> Reply:
    return Reply(FORBIDDEN, {"detail": detail})


class KeyRing:
    """The configured API keys (`[api.keys]`: key -> principal)."""

    def __init__(self, keys: Mapping[str, str]) -> None:
        self._principals = {_digest(key): principal for key, principal in keys.items()}

    def __len__(self) -> int:
        return len(self._principals)

    @property
    def principals(self) -> frozenset[str]:
        return frozenset(self._principals.values())

    def authenticate(self, headers: Mapping[str, str]) -> str | Reply:
        """The caller's principal, or the 403 reply to send (`headers` case-insensitive)."""
        api_key = headers.get(API_KEY_HEADER, "")
        if api_key:
            return self._principals.get(_digest(api_key)) or _refused(INVALID_API_KEY)
        parts = headers.get(AUTHORIZATION_HEADER, "").split()
        if not parts or parts[0].lower() != TOKEN_KEYWORD:
            return _refused(NOT_AUTHENTICATED)
        if len(parts) == 1:
            return _refused(TOKEN_WITHOUT_CREDENTIALS)
        if len(parts) > 2:
            return _refused(TOKEN_WITH_SPACES)
        return self._principals.get(_digest(parts[1])) or _refused(INVALID_TOKEN)

    @staticmethod
    def key_of(headers: Mapping[str, str]) -> bytes:
        """The digest of the key `authenticate` took from `headers` (call it after a
        successful `authenticate`): what per-key limits count by."""
        api_key = headers.get(API_KEY_HEADER, "")
        if api_key:
            return _digest(api_key)
        return _digest(headers.get(AUTHORIZATION_HEADER, "").split()[1])
