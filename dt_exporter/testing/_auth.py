"""Tokens the emulator issues, and the 401/403 checks (reference section 4).

Token format (https://docs.dynatrace.com/docs/dynatrace-api/basics/dynatrace-api-authentication):
`dt0c01.<24 upper alnum>.<64 upper alnum>`; platform tokens start with `dt0s16` and are sent as
`Authorization: Bearer`, access tokens as `Authorization: Api-Token` (or `?api-token=`). The
emulator refuses a token sent with the other scheme. A platform token passes a scope check when
it holds either the access-token scope or the matching IAM permission.
"""

from __future__ import annotations

import re
import secrets
import string
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from dt_exporter.testing._responses import Refusal

TOKEN_PATTERN: Final = re.compile(r"dt0[a-zA-Z][0-9]{2}\.[A-Z0-9]{24}\.[A-Z0-9]{64}")
_ALPHABET: Final = string.ascii_uppercase + string.digits

LOGS_SCOPE: Final = "logs.ingest"
EVENTS_SCOPE: Final = "events.ingest"
SECURITY_SCOPE: Final = "openpipeline.events_security.custom"
#: access-token scope -> the IAM permission a platform token may hold instead
#: (`openpipeline:logs:ingest` for these paths is UNCONFIRMED, reference section 4.1).
PLATFORM_PERMISSIONS: Final = {
    LOGS_SCOPE: "openpipeline:logs:ingest",
    SECURITY_SCOPE: "openpipeline:security.events.custom:ingest",
}
ALL_SCOPES: Final = (LOGS_SCOPE, EVENTS_SCOPE, SECURITY_SCOPE, *PLATFORM_PERMISSIONS.values())


def new_token(platform: bool = False) -> str:
    """A fresh random token in Dynatrace's format."""
    public = "".join(secrets.choice(_ALPHABET) for _ in range(24))
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(64))
    return f"{'dt0s16' if platform else 'dt0c01'}.{public}.{secret}"


def redact(authorization: str) -> str:
    """`<scheme> <redacted>`: tests see which scheme was used, never the credential."""
    scheme, _, _ = authorization.strip().partition(" ")
    return f"{scheme} <redacted>" if scheme else "<redacted>"


@dataclass(frozen=True, slots=True)
class _Grant:
    scopes: frozenset[str]
    platform: bool


class TokenStore:
    """The tokens this emulator accepts, with their scopes. Thread-safe."""

    def __init__(self) -> None:
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()

    def add(self, token: str, scopes: Iterable[str], platform: bool) -> str:
        if not TOKEN_PATTERN.fullmatch(token):
            raise ValueError("token does not match Dynatrace's token format")
        with self._lock:
            self._grants[token] = _Grant(frozenset(scopes), platform)
        return token

    def check(self, authorization: str | None, query_token: str | None, scope: str) -> None:
        """Raise `Refusal` 401 for a missing or unknown token, 403 for a missing scope."""
        if authorization:
            scheme, _, token = authorization.strip().partition(" ")
            scheme, token = scheme.lower(), token.strip()
            if scheme not in ("api-token", "bearer"):
                raise Refusal(401, "Unsupported authorization scheme; use Api-Token or Bearer.")
        elif query_token:
            scheme, token = "api-token", query_token
        else:
            raise Refusal(401, "Missing authorization parameter.")
        with self._lock:
            grant = self._grants.get(token)
        if grant is None:
            raise Refusal(401, "Token Authentication failed")
        if grant.platform != (scheme == "bearer"):
            kind = "Platform tokens need" if grant.platform else "Access tokens need"
            scheme_name = "Bearer" if grant.platform else "Api-Token"
            raise Refusal(401, f"Token Authentication failed: {kind} the {scheme_name} scheme.")
        accepted = {scope, PLATFORM_PERMISSIONS.get(scope, scope)}
        if not grant.scopes & accepted:
            raise Refusal(403, f"Token is missing required scope. Use one of: {scope}")
