"""Events API v2 and OpenPipeline security events: validation and shaping (pure).

Events API v2 (https://docs.dynatrace.com/docs/dynatrace-api/environment-api/events-v2/post-event):
- a missing or unknown `eventType`, a missing `title`, or a field of the wrong type breaks the
  request's schema: 400 for the whole request (the API's `constraintViolations` style);
- more than 100 properties, a key over 100 or a value over 4,096 characters:
  `INVALID_METADATA` for that event; a non-string value is measured as its JSON text;
- `startTime`/`endTime` outside the documented window (problem-opening events: 6 h back,
  5 min ahead; info events: 30 days back, 7 days ahead) or `endTime < startTime`:
  `INVALID_TIMESTAMPS`;
- an array of events is accepted too (the docs show one object), one result per event;
  `reportCount` counts the events that were accepted.

Security events (https://docs.dynatrace.com/docs/platform/openpipeline/reference/api-ingestion-reference):
each query parameter becomes a top-level field; an overridden field is kept as
`overwrittenN.<field>`.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence
from typing import Any, Final

from dt_exporter.testing._attributes import overwritten_key, to_text
from dt_exporter.testing._bodies import RESERVED_QUERY
from dt_exporter.testing._responses import Refusal

EVENT_TYPES: Final = frozenset({
    "AVAILABILITY_EVENT", "CUSTOM_ALERT", "CUSTOM_ANNOTATION", "CUSTOM_CONFIGURATION",
    "CUSTOM_DEPLOYMENT", "CUSTOM_INFO", "ERROR_EVENT", "MARKED_FOR_TERMINATION",
    "PERFORMANCE_EVENT", "RESOURCE_CONTENTION_EVENT", "WARNING",
})  # fmt: skip
INFO_EVENT_TYPES: Final = frozenset({
    "CUSTOM_ANNOTATION", "CUSTOM_CONFIGURATION", "CUSTOM_DEPLOYMENT", "CUSTOM_INFO",
    "MARKED_FOR_TERMINATION",
})  # fmt: skip
MAX_PROPERTIES: Final = 100
MAX_PROPERTY_KEY_CHARS: Final = 100
MAX_PROPERTY_VALUE_CHARS: Final = 4096
_MINUTE_MS: Final = 60_000
_DAY_MS: Final = 24 * 60 * _MINUTE_MS
#: (max age, max lead) of `startTime`, per kind of event.
_WINDOWS: Final = {True: (30 * _DAY_MS, 7 * _DAY_MS), False: (6 * 60 * _MINUTE_MS, 5 * _MINUTE_MS)}


def as_list(document: Any, what: str) -> list[Any]:
    """One object or an array of objects, as a list; anything else is 400."""
    items = [document] if isinstance(document, dict) else document
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise Refusal(400, f"The {what} payload must be a JSON object or an array of objects.")
    return items


def check_schema(event: dict[str, Any], where: str = "") -> None:
    """400 for what the API's schema refuses; `where` prefixes the message."""
    event_type = event.get("eventType")
    if event_type not in EVENT_TYPES:
        raise Refusal(400, f"{where}eventType must be one of {', '.join(sorted(EVENT_TYPES))}")
    if not isinstance(event.get("title"), str) or not event["title"]:
        raise Refusal(400, f"{where}title must not be null or empty")
    for name in ("startTime", "endTime", "timeout"):
        value = event.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise Refusal(400, f"{where}{name} must be an integer")
    if event.get("entitySelector") is not None and not isinstance(event["entitySelector"], str):
        raise Refusal(400, f"{where}entitySelector must be a string")
    if event.get("properties") is not None and not isinstance(event["properties"], dict):
        raise Refusal(400, f"{where}properties must be an object")


def event_status(event: dict[str, Any], now_ms: int) -> str:
    """`OK`, `INVALID_METADATA` or `INVALID_TIMESTAMPS` for a schema-valid event."""
    properties: dict[str, Any] = event.get("properties") or {}
    if len(properties) > MAX_PROPERTIES or any(
        len(key) > MAX_PROPERTY_KEY_CHARS or len(to_text(value)) > MAX_PROPERTY_VALUE_CHARS
        for key, value in properties.items()
    ):
        return "INVALID_METADATA"
    start, end = event.get("startTime"), event.get("endTime")
    max_age, max_lead = _WINDOWS[event["eventType"] in INFO_EVENT_TYPES]
    if start is not None and not now_ms - max_age <= start <= now_ms + max_lead:
        return "INVALID_TIMESTAMPS"
    if end is not None and end < (start if start is not None else now_ms):
        return "INVALID_TIMESTAMPS"
    return "OK"


def ingest_results(
    events: list[dict[str, Any]], now_ms: int, rejected: Collection[int] = ()
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The 201 body (`EventIngestResults`) and the accepted events."""
    for index, event in enumerate(events):
        check_schema(event, f"event {index}: " if len(events) > 1 else "")
    results, accepted = [], []
    for index, event in enumerate(events):
        status = "INVALID_METADATA" if index in rejected else event_status(event, now_ms)
        results.append({"correlationId": secrets.token_hex(8), "status": status})
        if status == "OK":
            accepted.append(event)
    return {"reportCount": len(accepted), "eventIngestResults": results}, accepted


def security_events(
    items: list[dict[str, Any]], query: Sequence[tuple[str, str]], endpoint: str, legacy: bool
) -> list[dict[str, Any]]:
    """Each event with the query parameters as fields and `_endpoint`/`_legacy` added."""
    fields = [(key, value) for key, value in query if key.lower() not in RESERVED_QUERY]
    shaped = []
    for item in items:
        event = dict(item)
        for key, value in fields:
            if key in event:
                event[overwritten_key(event, key)] = event[key]
            event[key] = value
        event["_endpoint"] = endpoint
        event["_legacy"] = legacy
        shaped.append(event)
    return shaped
