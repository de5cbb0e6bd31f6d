"""What Dynatrace makes of one JSON log record: its special fields and attributes (pure).

Rules: reference sections 1.4 to 1.8, from
https://docs.dynatrace.com/docs/analyze-explore-automate/logs/lma-log-ingestion/lma-log-ingestion-via-api/lma-ingest-json-txt-logs
and https://docs.dynatrace.com/managed/analyze-explore-automate/log-monitoring/acquire-log-data/lm-log-data-transformation

Where the documentation is silent, the emulator decides (and says so here):
- a key whose value is `null` counts as absent for `timestamp`, `loglevel` and `content`;
- content keys match case-sensitively (the docs state case-insensitivity only for timestamp and
  loglevel keys);
- `loglevel` is the first-letter rule applied to the first loglevel key found, whatever its
  name, `loglevel` included; a value that matches no prefix (e.g. an HTTP status `"200"` under
  `status`) gives `NONE`; so does a non-string value;
- the loglevel key stays an attribute (as in the recorded Fluent Bit view), except `loglevel`
  and `status`, which name fields the record has itself;
- `trace_id` and `span_id` string values move to the record's own fields;
- a timestamp more than 10 minutes ahead is replaced by the ingest time (`timestamp=None`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from dt_exporter.testing._attributes import (
    DataModel,
    add_attribute,
    overlay,
    put,
    to_json_text,
    to_text,
)
from dt_exporter.testing._models import LogEndpoint, ReceivedRecord
from dt_exporter.testing._timestamps import parse_timestamp

TIMESTAMP_KEYS: Final = (
    "timestamp", "@timestamp", "_timestamp", "eventtime", "date", "published_date",
    "syslog.timestamp", "time", "epochsecond", "starttime", "datetime", "ts", "timemillis", "@t",
)  # fmt: skip
LOGLEVEL_KEYS: Final = ("loglevel", "status", "severity", "level", "syslog.severity")
CONTENT_KEYS: Final = ("content", "message", "payload", "body", "log")
RAW_CONTENT_KEYS: Final = (*CONTENT_KEYS, "_raw")

#: lower-cased key -> (is a timestamp key, rank): one dict lookup per input key.
_SPECIAL_RANKS: Final[dict[str, tuple[bool, int]]] = {
    **{key: (True, rank) for rank, key in enumerate(TIMESTAMP_KEYS)},
    **{key: (False, rank) for rank, key in enumerate(LOGLEVEL_KEYS)},
}
#: Loglevel keys that name fields the record has itself, so they are not kept as attributes.
RECORD_FIELDS: Final = frozenset({"loglevel", "status"})

FUTURE_TOLERANCE_MS: Final = 10 * 60 * 1000
MAX_AGE_MS: Final = 24 * 3600 * 1000

#: First-letter rule; "e", "t" and "v" need a longer look (see `loglevel_from_value`).
_LOGLEVEL_BY_LETTER: Final = {
    "f": "EMERGENCY", "a": "ALERT", "c": "CRITICAL", "s": "SEVERE", "w": "WARN", "n": "NOTICE",
    "i": "INFO", "d": "DEBUG",
}  # fmt: skip
_STATUS_OF_LOGLEVEL: Final = {
    "SEVERE": "ERROR", "ERROR": "ERROR", "CRITICAL": "ERROR", "ALERT": "ERROR",
    "FATAL": "ERROR", "EMERGENCY": "ERROR", "WARN": "WARN", "INFO": "INFO", "TRACE": "INFO",
    "DEBUG": "INFO", "NOTICE": "INFO", "NONE": "NONE",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What one request contributes to each of its records."""

    model: DataModel
    now_ms: int
    extra_attributes: Mapping[str, str | list[str]]
    endpoint: LogEndpoint


def loglevel_from_value(value: object) -> str:
    """Dynatrace's first-letter rule; anything that matches no prefix is `NONE`."""
    if not isinstance(value, str):
        return "NONE"
    lowered = value[:7].lower()
    first = lowered[:1]
    if first == "e":
        return "EMERGENCY" if lowered.startswith("emerg") else "ERROR"
    if first == "t":
        return "DEBUG" if lowered.startswith("trace") else "NONE"
    if first == "v":
        return "DEBUG" if lowered.startswith("verbose") else "NONE"
    return _LOGLEVEL_BY_LETTER.get(first, "NONE")


def status_of(loglevel: str) -> str:
    """The `status` Dynatrace derives from a `loglevel`."""
    return _STATUS_OF_LOGLEVEL.get(loglevel, "NONE")


def find_special_keys(record: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The keys that give `timestamp` and `loglevel`: first in priority, any case."""
    timestamp_key = loglevel_key = None
    timestamp_rank = loglevel_rank = len(TIMESTAMP_KEYS)
    for key, value in record.items():
        special = _SPECIAL_RANKS.get(key.lower())
        if special is None or value is None:
            continue
        is_timestamp, rank = special
        if is_timestamp and rank < timestamp_rank:
            timestamp_key, timestamp_rank = key, rank
        elif not is_timestamp and rank < loglevel_rank:
            loglevel_key, loglevel_rank = key, rank
    return timestamp_key, loglevel_key


def unless_ahead(ms: int | None, now_ms: int) -> int | None:
    """`ms`, or `None` (the ingest time) when it is more than 10 minutes ahead."""
    return None if ms is None or ms > now_ms + FUTURE_TOLERANCE_MS else ms


def resolve_timestamp(value: object, now_ms: int) -> tuple[int | None, bool]:
    """Epoch ms (`None`: ingest time) and whether the value could be read at all."""
    ms = parse_timestamp(value, now_ms)
    return unless_ahead(ms, now_ms), ms is not None


def is_too_old(record: ReceivedRecord, now_ms: int) -> bool:
    """Dynatrace refuses records older than 24 hours."""
    return record.timestamp is not None and record.timestamp < now_ms - MAX_AGE_MS


def find_content(record: Mapping[str, Any], model: DataModel) -> tuple[str | None, str | None]:
    """(content key, content) per the data model; `(None, None)` when no key qualifies."""
    if model == "raw":
        for key in RAW_CONTENT_KEYS:
            value = record.get(key)
            if value is not None:
                return key, to_text(value)
        return None, None
    for key in CONTENT_KEYS:
        value = record.get(key)
        if isinstance(value, str):
            return key, value
        if value is not None and not isinstance(value, (dict, list)):
            return key, to_json_text(value)
    return None, None


def interpret_record(record: dict[str, Any], ctx: RequestContext) -> tuple[ReceivedRecord, bool]:
    """The record Dynatrace stores for one JSON object, and whether nesting was cut."""
    timestamp_key, loglevel_key = find_special_keys(record)
    content_key, content = find_content(record, ctx.model)
    timestamp: int | None = None
    parsed = True
    if timestamp_key is not None:
        timestamp, parsed = resolve_timestamp(record[timestamp_key], ctx.now_ms)
    loglevel = "NONE" if loglevel_key is None else loglevel_from_value(record[loglevel_key])
    trace_id = record.get("trace_id")
    span_id = record.get("span_id")
    consumed = {timestamp_key, content_key}
    if loglevel_key is not None and loglevel_key.lower() in RECORD_FIELDS:
        consumed.add(loglevel_key)
    if isinstance(trace_id, str):
        consumed.add("trace_id")
    if isinstance(span_id, str):
        consumed.add("span_id")

    attributes: dict[str, Any] = {}
    too_nested = False
    for key, value in record.items():  # the emulator's hot loop: scalars are handled inline
        if key in consumed:
            continue
        if value.__class__ is dict or value.__class__ is list:
            too_nested = add_attribute(attributes, key, value, ctx.model) or too_nested
        elif key in attributes:  # taken by a flattened object: the first value wins
            put(attributes, key, value)
        else:
            attributes[key] = value
    if not parsed and timestamp_key is not None:
        add_attribute(attributes, "unparsed_timestamp", record[timestamp_key], ctx.model)
    if content is None:
        content = "" if ctx.model == "raw" else to_json_text(record)
    return (
        ReceivedRecord(
            timestamp=timestamp,
            timestamp_key=timestamp_key,
            loglevel=loglevel,
            loglevel_key=loglevel_key,
            status=status_of(loglevel),
            content=content,
            content_key=content_key,
            attributes=overlay(attributes, ctx.extra_attributes),
            trace_id=trace_id if isinstance(trace_id, str) else None,
            span_id=span_id if isinstance(span_id, str) else None,
            endpoint=ctx.endpoint,
            raw=record,
        ),
        too_nested,
    )


def interpret_text(text: str, ctx: RequestContext) -> ReceivedRecord:
    """A `text/plain` body: one record whose content is the whole text."""
    return ReceivedRecord(
        timestamp=None,
        timestamp_key=None,
        loglevel="NONE",
        loglevel_key=None,
        status="NONE",
        content=text,
        content_key=None,
        attributes=overlay({}, ctx.extra_attributes),
        trace_id=None,
        span_id=None,
        endpoint=ctx.endpoint,
        raw=text,
    )
