"""Pure: Dynatrace events (Events API v2) as a typed value, checked and fitted to the limits.

Rules encoded here (https://docs.dynatrace.com/docs/dynatrace-api/environment-api/events-v2/
post-event, reference section 6):
- `eventType` is one of eleven documented types; `title` is required;
- `timeout` is in minutes, 15 by default, capped at 360 by Dynatrace;
- `endTime` must not lie before `startTime`; `startTime` may lie at most 6 h back and 5 min
  ahead for problem-opening events, 30 days back and 7 days ahead for info events;
- at most 100 properties, keys up to 100 and values up to 4,096 characters;
- `dt.*` keys are refused except `dt.event.*`, `dt.davis.*` and `dt.entity.*` (Dynatrace API
  changelog 1.250: "unknown other dt. property keys remain disallowed").

Decisions where the documentation is silent:
- Property values are sent as JSON strings (every documented example does; other JSON types are
  UNCONFIRMED): booleans as `true`/`false`, numbers as their JSON text.
- "Characters" are counted as UTF-16 code units, as Dynatrace's Java services count them; that is
  never fewer than Python's `len()`, so a value we let through fits either reading.
- `fit` cuts an over-long key or value to the limit, ending it with `[TRUNCATED]` (as the log
  mapping does), drops refused `dt.*` keys and properties beyond the 100th, and lowers a timeout
  over 360 to 360 (what Dynatrace itself does). What it cannot repair (no title, a timeout
  under 1, an end before the start) stays for `validate` to report.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final, TypeAlias

from opentelemetry.sdk._logs import ReadableLogRecord

from dt_exporter._text import bytes_to_text, describe, float_to_json, json_text

# The routing rules are a setting: config.py parses DT_EXPORTER_EVENT_ROUTES into them.
from dt_exporter.config import ROUTES_ENV_VAR as ROUTES_ENV_VAR
from dt_exporter.config import EventRoute as EventRoute
from dt_exporter.config import EventRoutes as EventRoutes
from dt_exporter.config import RouteTarget as RouteTarget
from dt_exporter.config import check_endpoint_name as check_endpoint_name
from dt_exporter.errors import DtExporterError
from dt_exporter.limits import (
    EVENT_MAX_KEY_CHARS,
    EVENT_MAX_PROPERTIES,
    EVENT_MAX_VALUE_CHARS,
    GRAIL,
    TRUNCATION_MARKER,
)
from dt_exporter.mapping import JsonObject, RecordMapper

PropertyValue: TypeAlias = "str | int | float | bool"

EVENT_MAX_TIMEOUT_MINUTES: Final = 360
#: `dt.*` property keys the Events API accepts; every other `dt.` key is refused.
ALLOWED_DT_PREFIXES: Final = ("dt.event.", "dt.davis.", "dt.entity.")
_MINUTE_MS: Final = 60_000
_DAY_MS: Final = 24 * 60 * _MINUTE_MS


class InvalidEventError(DtExporterError, ValueError):
    """An `Event` was built from values of the wrong kind (an unknown event type, a non-string
    title, a property value that is not str/int/float/bool). Raised at construction only."""


class EventType(str, enum.Enum):
    """The documented `eventType` values of the Events API v2."""

    AVAILABILITY_EVENT = "AVAILABILITY_EVENT"
    CUSTOM_ALERT = "CUSTOM_ALERT"
    CUSTOM_ANNOTATION = "CUSTOM_ANNOTATION"
    CUSTOM_CONFIGURATION = "CUSTOM_CONFIGURATION"
    CUSTOM_DEPLOYMENT = "CUSTOM_DEPLOYMENT"
    CUSTOM_INFO = "CUSTOM_INFO"
    ERROR_EVENT = "ERROR_EVENT"
    MARKED_FOR_TERMINATION = "MARKED_FOR_TERMINATION"
    PERFORMANCE_EVENT = "PERFORMANCE_EVENT"
    RESOURCE_CONTENTION_EVENT = "RESOURCE_CONTENTION_EVENT"
    WARNING = "WARNING"

    @property
    def is_info(self) -> bool:
        """Info events do not open problems and have the wider time window."""
        return self in _INFO_TYPES


_INFO_TYPES: Final = frozenset({
    EventType.CUSTOM_ANNOTATION, EventType.CUSTOM_CONFIGURATION, EventType.CUSTOM_DEPLOYMENT,
    EventType.CUSTOM_INFO, EventType.MARKED_FOR_TERMINATION,
})  # fmt: skip
#: (max age, max lead) of `startTime` in ms, for info events and problem-opening events.
_WINDOW_INFO: Final = (30 * _DAY_MS, 7 * _DAY_MS)
_WINDOW_PROBLEM: Final = (6 * 60 * _MINUTE_MS, 5 * _MINUTE_MS)
_EMPTY: Final[Mapping[str, PropertyValue]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Event:
    """One event for the Events API v2. Times are epoch milliseconds (UTC).

    `event_type` also takes the type's name as a string. Values of the wrong kind raise
    `InvalidEventError` here; limits are checked by `validate` and repaired by `fit`.
    """

    event_type: EventType
    title: str
    start_time_ms: int | None = None
    end_time_ms: int | None = None
    timeout_minutes: int | None = None
    entity_selector: str | None = None
    properties: Mapping[str, PropertyValue] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        try:
            event_type = EventType(self.event_type)
        except ValueError:
            known = ", ".join(t.value for t in EventType)
            raise InvalidEventError(
                f"unknown event type {self.event_type!r}; expected one of {known}"
            ) from None
        object.__setattr__(self, "event_type", event_type)
        if not isinstance(self.title, str):
            raise InvalidEventError(f"title must be a string, not {type(self.title).__name__}")
        for name in ("start_time_ms", "end_time_ms", "timeout_minutes"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise InvalidEventError(f"{name} must be an integer, not {type(value).__name__}")
        if self.entity_selector is not None and not isinstance(self.entity_selector, str):
            raise InvalidEventError("entity_selector must be a string")
        if not isinstance(self.properties, Mapping):
            raise InvalidEventError("properties must be a mapping of str to str/int/float/bool")
        for key, value in self.properties.items():
            if not isinstance(key, str):
                raise InvalidEventError(f"property key {key!r} is not a string")
            if not isinstance(value, (str, int, float)):  # bool is an int
                raise InvalidEventError(
                    f"property {key!r}: {type(value).__name__} is not str, int, float or bool"
                )
        if self.properties is not _EMPTY:
            object.__setattr__(self, "properties", MappingProxyType(dict(self.properties)))

    def __hash__(self) -> int:
        return hash((self.event_type, self.title, self.start_time_ms, self.end_time_ms,
                     self.timeout_minutes, self.entity_selector,
                     tuple(sorted(self.properties.items(), key=lambda item: item[0]))))

    def to_json(self) -> dict[str, Any]:
        """The Events API body (`EventIngest`): camelCase keys, unset fields left out."""
        body: dict[str, Any] = {"eventType": self.event_type.value, "title": self.title}
        if self.start_time_ms is not None:
            body["startTime"] = self.start_time_ms
        if self.end_time_ms is not None:
            body["endTime"] = self.end_time_ms
        if self.timeout_minutes is not None:
            body["timeout"] = self.timeout_minutes
        if self.entity_selector is not None:
            body["entitySelector"] = self.entity_selector
        if self.properties:
            body["properties"] = {k: property_text(v) for k, v in self.properties.items()}
        return body


def property_text(value: PropertyValue) -> str:
    """A property value as the string we send: `true`/`false`, numbers as JSON text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    as_json = float_to_json(value)
    return as_json if isinstance(as_json, str) else repr(as_json)


def chars(text: str) -> int:
    """Length in UTF-16 code units (how Dynatrace's services count characters)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def cut_chars(text: str, max_chars: int) -> tuple[str, bool]:
    """`text` within `max_chars` UTF-16 code units, ending with `[TRUNCATED]` when cut."""
    if chars(text) <= max_chars:
        return text, False
    budget = max_chars - len(TRUNCATION_MARKER)
    kept, used = [], 0
    for char in text:
        width = 2 if ord(char) > 0xFFFF else 1
        if used + width > budget:
            break
        kept.append(char)
        used += width
    return "".join(kept) + TRUNCATION_MARKER, True


def is_allowed_key(key: str) -> bool:
    """False for `dt.*` keys outside the families the Events API accepts."""
    return not key.startswith("dt.") or key.startswith(ALLOWED_DT_PREFIXES)


def validate(event: Event, *, now_ms: int | None = None) -> list[str]:
    """Every reason Dynatrace would refuse (or alter) `event`, in words; empty when none.

    With `now_ms`, `startTime` is also checked against the documented window for its type.
    """
    problems: list[str] = []
    if not event.title.strip():
        problems.append("title is required")
    if len(event.properties) > EVENT_MAX_PROPERTIES:
        problems.append(
            f"{len(event.properties)} properties; at most {EVENT_MAX_PROPERTIES} are allowed"
        )
    for key, value in event.properties.items():
        if not key:
            problems.append("a property key is empty")
        elif chars(key) > EVENT_MAX_KEY_CHARS:
            problems.append(f"property key {key[:40]!r}... is longer than "
                            f"{EVENT_MAX_KEY_CHARS} characters")
        if not is_allowed_key(key):
            problems.append(f"property key {key!r}: dt.* keys are reserved (only dt.event.*, "
                            "dt.davis.* and dt.entity.* are allowed)")
        if chars(property_text(value)) > EVENT_MAX_VALUE_CHARS:
            problems.append(f"property {key[:40]!r}: value longer than "
                            f"{EVENT_MAX_VALUE_CHARS} characters")
    timeout = event.timeout_minutes
    if timeout is not None and not 1 <= timeout <= EVENT_MAX_TIMEOUT_MINUTES:
        problems.append(f"timeout must be from 1 to {EVENT_MAX_TIMEOUT_MINUTES} minutes")
    start, end = event.start_time_ms, event.end_time_ms
    for name, when in (("start time", start), ("end time", end)):
        if when is not None and when < 0:
            problems.append(f"{name} must not be negative")
    if start is not None and end is not None and end < start:
        problems.append("end time lies before start time")
    if now_ms is not None:
        problems.extend(_window_problems(event, now_ms))
    return problems


def _window_problems(event: Event, now_ms: int) -> list[str]:
    max_age, max_lead = _WINDOW_INFO if event.event_type.is_info else _WINDOW_PROBLEM
    kind = "an info event" if event.event_type.is_info else "a problem-opening event"
    start, end = event.start_time_ms, event.end_time_ms
    problems = []
    if start is not None and start < now_ms - max_age:
        problems.append(f"start time is too far in the past for {kind}")
    if start is not None and start > now_ms + max_lead:
        problems.append(f"start time is too far in the future for {kind}")
    if start is None and end is not None and end < now_ms:
        problems.append("end time lies before start time (now)")
    return problems


def fit(event: Event) -> tuple[Event, Mapping[str, int]]:
    """`event` repaired to fit the limits where Dynatrace would take the rest, and what was
    changed: `key` / `value` (cut), `reserved_key` (a refused dt.* key dropped), `properties`
    (dropped beyond the 100th or colliding after a cut), `timeout` (lowered to 360)."""
    changes: Counter[str] = Counter()
    properties: dict[str, PropertyValue] = {}
    for key, value in event.properties.items():
        if not is_allowed_key(key):
            changes["reserved_key"] += 1
            continue
        fitted_key, cut = cut_chars(key, EVENT_MAX_KEY_CHARS)
        if cut:
            changes["key"] += 1
        if fitted_key in properties:
            changes["properties"] += 1
            continue
        if len(properties) >= EVENT_MAX_PROPERTIES:
            changes["properties"] += 1
            continue
        text = property_text(value)
        fitted_text, cut = cut_chars(text, EVENT_MAX_VALUE_CHARS)
        if cut:
            changes["value"] += 1
        properties[fitted_key] = fitted_text if cut else value
    timeout = event.timeout_minutes
    if timeout is not None and timeout > EVENT_MAX_TIMEOUT_MINUTES:
        timeout = EVENT_MAX_TIMEOUT_MINUTES
        changes["timeout"] += 1
    if not changes:
        return event, {}
    return replace(event, properties=properties, timeout_minutes=timeout), dict(changes)


# -- OpenTelemetry event records ----------------------------------------------------------------

#: Attributes that set an event's fields rather than becoming properties.
TITLE_ATTRIBUTE: Final = "event.title"
ENTITY_SELECTOR_ATTRIBUTE: Final = "event.entity_selector"
TIMEOUT_ATTRIBUTE: Final = "event.timeout_minutes"
_CONTROL_ATTRIBUTES: Final = frozenset({TITLE_ATTRIBUTE, ENTITY_SELECTOR_ATTRIBUTE,
                                        TIMEOUT_ATTRIBUTE})
#: Resource attributes copied into an event's properties (the record's own attributes win).
RESOURCE_PROPERTIES: Final = ("service.name", "service.namespace", "service.version",
                              "deployment.environment.name", "deployment.environment")
#: Mappings nested deeper than this become JSON text, as in the log mapping (`max_nesting_depth`,
#: 5 in both limit profiles).
_FLATTEN_DEPTH: Final = GRAIL.max_nesting_depth


def event_from_record(record: ReadableLogRecord, event_type: EventType | str) -> Event:
    """An OpenTelemetry event record as an Events API event (the table in docs/events.md).

    title: the `event.title` attribute, else the event name; startTime: the record's timestamp
    (else its observed timestamp) in ms; entitySelector / timeout: the `event.entity_selector` /
    `event.timeout_minutes` attributes; properties: `event.name`, `content` (the body, when it
    has one), the other attributes flattened to dotted keys (lists as JSON text, None left out),
    `trace_id` / `span_id`, then `service.*` and `deployment.environment*` from the resource.
    The result may exceed the limits: the client `fit`s it.
    """
    lr = record.log_record
    name = lr.event_name or ""
    attributes: Mapping[str, Any] = lr.attributes or {}
    properties: dict[str, PropertyValue] = {"event.name": name}
    content = _body_text(lr.body)
    if content:
        properties["content"] = content
    for key, value in attributes.items():
        if key not in _CONTROL_ATTRIBUTES:
            _flatten_into(properties, str(key), value, 1)
    if lr.trace_id:
        properties["trace_id"] = lr.trace_id.to_bytes(16, "big").hex()
        if lr.span_id:
            properties["span_id"] = lr.span_id.to_bytes(8, "big").hex()
    resource = record.resource.attributes if record.resource is not None else {}
    for key in RESOURCE_PROPERTIES:
        value = resource.get(key)
        if isinstance(value, (str, int, float)):
            properties.setdefault(key, value)
    title = attributes.get(TITLE_ATTRIBUTE)
    selector = attributes.get(ENTITY_SELECTOR_ATTRIBUTE)
    timeout = attributes.get(TIMEOUT_ATTRIBUTE)
    timestamp = lr.timestamp or lr.observed_timestamp
    return Event(
        EventType(event_type),
        title if isinstance(title, str) and title.strip() else name,
        start_time_ms=timestamp // 1_000_000 if timestamp else None,
        timeout_minutes=timeout if isinstance(timeout, int) and not isinstance(timeout, bool)
        else None,
        entity_selector=selector if isinstance(selector, str) and selector.strip() else None,
        properties=properties,
    )


def _flatten_into(out: dict[str, PropertyValue], key: str, value: object, depth: int) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        if depth > _FLATTEN_DEPTH:
            out[key] = json_text(value)
            return
        for sub_key, sub_value in value.items():
            _flatten_into(out, f"{key}.{sub_key}", sub_value, depth + 1)
        return
    if isinstance(value, (str, int, float)):
        out[key] = value
    elif isinstance(value, (bytes, bytearray, memoryview)):
        out[key] = bytes_to_text(value)
    elif isinstance(value, (list, tuple, set, frozenset)):
        out[key] = json_text(value)
    elif isinstance(value, (dt.datetime, dt.date, dt.time)):
        out[key] = value.isoformat()
    else:
        out[key] = describe(value)


def _body_text(body: object) -> str:
    if body is None:
        return ""
    if isinstance(body, str):
        return body
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes_to_text(body)
    return json_text(body)


def security_event_from_record(record: ReadableLogRecord, mapper: RecordMapper) -> JsonObject:
    """An OpenTelemetry event record as one flat security event: exactly the JSON object log
    ingest would get (resource and scope attributes, `event.name`, the record's attributes
    flattened, `trace_id`/`span_id`, `content`, `timestamp` in ms, `loglevel`), within the
    mapper's limits."""
    return mapper.map(record)
