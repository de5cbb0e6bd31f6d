"""Pure: how many records a successful-looking answer says Dynatrace did not take.

- Logs JSON, 200 `SuccessEnvelope` `{"details": {"code": 200, "message": ...}}`: the documented
  messages do not give a count in a fixed format (UNCONFIRMED), so we read the record indexes the
  message lists after its last colon, if any. A "too nested" message names records that were
  ingested with their deepest keys removed: those are not rejections.
- Events API v2, 201 `EventIngestResults`: every result whose status is not `OK` is a rejection;
  for a body of one event (`one_event_rejections`), the event is rejected only when none of its
  reports is `OK`.
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


def ingest_results(body: bytes) -> tuple[list[str], list[str]]:
    """Correlation ids and statuses of a 201 `EventIngestResults` body (empty when absent)."""
    parsed = _parse(body)
    results = parsed.get("eventIngestResults") if isinstance(parsed, dict) else None
    ids: list[str] = []
    statuses: list[str] = []
    for result in results if isinstance(results, list) else []:
        if isinstance(result, dict):
            if result.get("correlationId"):
                ids.append(str(result["correlationId"]))
            statuses.append(str(result.get("status")))
    return ids, statuses


def _not_ok(statuses: list[str]) -> tuple[list[str], str]:
    """The statuses that are not `OK`, and the message naming them (sorted, once each)."""
    failed = [s for s in statuses if s != "OK"]
    return failed, ", ".join(sorted(set(failed)))


def events_rejections(status: int, body: bytes) -> tuple[int, str]:
    _, statuses = ingest_results(body)
    failed, message = _not_ok(statuses)
    return len(failed), message


def one_event_rejections(status: int, body: bytes) -> tuple[int, str]:
    """`events_rejections` for a body of one event: the event counts as rejected only when none
    of its reports is `OK` (an entity selector matching two hosts makes two)."""
    _, statuses = ingest_results(body)
    failed, message = _not_ok(statuses)
    if not failed:
        return 0, message
    return (0 if "OK" in statuses else 1), message


def nothing_rejected(status: int, body: bytes) -> tuple[int, str]:
    return 0, ""


def server_message(body: bytes, limit: int = 300) -> str:
    """The message of Dynatrace's ErrorEnvelope (`{"error": {"message": ...}}`), shortened;
    "" when there is none. Never echoes the request."""
    parsed = _parse(body)
    error = parsed.get("error") if isinstance(parsed, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message)[:limit] if message else ""
