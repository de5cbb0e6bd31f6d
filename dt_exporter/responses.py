"""Pure: how many records a successful-looking answer says Dynatrace did not take.

- Logs JSON, 200 `SuccessEnvelope` `{"details": {"code": 200, "message": ...}}`: the documented
  messages do not give a count in a fixed format (UNCONFIRMED), so we read the record indexes the
  message lists after its last colon, if any. A "too nested" message names records that were
  ingested with their deepest keys removed: those are not rejections.
- Events API v2, 201 `EventIngestResults`: every result whose status is not `OK` is a rejection.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

_INDEXES: Final = re.compile(r"\d+")


def _parse(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def logs_json_rejections(status: int, body: bytes) -> tuple[int, str]:
    if status != 200:
        return 0, ""
    parsed = _parse(body)
    details = parsed.get("details") if isinstance(parsed, dict) else None
    message = str(details.get("message", "")) if isinstance(details, dict) else ""
    if "nested" in message.lower() or ":" not in message:
        return 0, message
    listed = message.rsplit(":", 1)[1]
    return len(_INDEXES.findall(listed)), message


def events_rejections(status: int, body: bytes) -> tuple[int, str]:
    parsed = _parse(body)
    results = parsed.get("eventIngestResults") if isinstance(parsed, dict) else None
    if not isinstance(results, list):
        return 0, ""
    failed = [r.get("status") for r in results if isinstance(r, dict) and r.get("status") != "OK"]
    return len(failed), ", ".join(sorted({str(s) for s in failed}))


def nothing_rejected(status: int, body: bytes) -> tuple[int, str]:
    return 0, ""


def server_message(body: bytes, limit: int = 300) -> str:
    """The message of Dynatrace's ErrorEnvelope (`{"error": {"message": ...}}`), shortened;
    "" when there is none. Never echoes the request."""
    parsed = _parse(body)
    error = parsed.get("error") if isinstance(parsed, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message)[:limit] if message else ""
