"""What Dynatrace makes of an OTLP `ExportLogsServiceRequest` (reference section 3.1, pure).

https://docs.dynatrace.com/docs/ingest-from/opentelemetry/otlp-api/ingest-logs

Choices where the documentation is silent (UNCONFIRMED there):
- no `time_unix_nano`: the JSON timestamp keys (body map in the flattened model, then the
  attributes), then `observed_time_unix_nano`, then the ingest time;
- `severity_text` that already is a Dynatrace loglevel (`FATAL`, `TRACE`, ...) is kept as is,
  other text goes through the first-letter rule; `severity_number` maps by OpenTelemetry's
  ranges (TRACE 1-4, DEBUG 5-8, INFO 9-12, WARN 13-16, ERROR 17-20, FATAL 21-24);
- clashing names get the first free `overwrittenN.` in the order resource, scope, record
  attributes, body map keys (the documented example: scope `overwritten1.`, record
  `overwritten2.`);
- a non-empty `event_name` becomes the attribute `event.name`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any, Final

from dt_exporter.testing._attributes import add_attribute, overlay, to_json_text, to_text
from dt_exporter.testing._interpret import (
    CONTENT_KEYS,
    RECORD_FIELDS,
    RequestContext,
    find_special_keys,
    loglevel_from_value,
    status_of,
    unless_ahead,
)
from dt_exporter.testing._models import ReceivedRecord
from dt_exporter.testing._timestamps import parse_timestamp

_LOGLEVELS: Final = frozenset({
    "ALERT", "CRITICAL", "DEBUG", "EMERGENCY", "ERROR", "FATAL", "INFO", "NONE", "NOTICE",
    "SEVERE", "TRACE", "WARN",
})  # fmt: skip
#: (highest SeverityNumber, loglevel): OpenTelemetry's ranges.
_SEVERITY_RANGES: Final = (
    (4, "TRACE"), (8, "DEBUG"), (12, "INFO"), (16, "WARN"), (20, "ERROR"), (24, "FATAL"),
)  # fmt: skip


def decode_request(body: bytes) -> Any:
    """The `ExportLogsServiceRequest` in a protobuf body; raises `ValueError` if it is not one."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as error:
        raise ValueError(str(error)) from None
    return request


def empty_response(rejected: int = 0, message: str = "") -> bytes:
    """A serialized `ExportLogsServiceResponse`, with `partial_success` when `rejected`."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    response = ExportLogsServiceResponse()
    if rejected:
        response.partial_success.rejected_log_records = rejected
        response.partial_success.error_message = message
    return bytes(response.SerializeToString())


def any_value(value: Any) -> Any:
    """An OTLP `AnyValue` as a plain value: bytes become base64 text."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return key_values(value.kvlist_value.values)
    return getattr(value, kind)


def key_values(pairs: Iterable[Any]) -> dict[str, Any]:
    return {pair.key: any_value(pair.value) for pair in pairs}


def interpret_request(request: Any, ctx: RequestContext) -> list[ReceivedRecord]:
    """Every log record in the request, in order."""
    records = []
    for resource_logs in request.resource_logs:
        resource = key_values(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            scope = key_values(scope_logs.scope.attributes)
            for log_record in scope_logs.log_records:
                records.append(interpret_log_record(log_record, resource, scope, ctx))
    return records


def _loglevel(log_record: Any) -> tuple[str, str] | None:
    text = log_record.severity_text
    if text:
        upper = text.upper()
        return (upper if upper in _LOGLEVELS else loglevel_from_value(text)), "severity_text"
    number = log_record.severity_number
    for upper, loglevel in _SEVERITY_RANGES:
        if 1 <= number <= upper:
            return loglevel, "severity_number"
    return None


def _content(body: Any, ctx: RequestContext) -> tuple[str | None, str]:
    """(content key, content): a string body, a body map per data model, else stringified."""
    if body is None:
        return None, ""
    if not isinstance(body, dict):
        return "body", to_text(body)
    if ctx.model == "raw":
        return "body", to_json_text(body)
    for key in CONTENT_KEYS:
        if isinstance(body.get(key), str):
            return key, body[key]
    return None, ""


def _timestamp(
    log_record: Any, searched: dict[str, Any], key: str | None, now_ms: int
) -> tuple[int | None, str | None]:
    """Epoch ms before the future rule, and where it came from."""
    if log_record.time_unix_nano:
        return log_record.time_unix_nano // 1_000_000, "time_unix_nano"
    if key is not None:
        timestamp = parse_timestamp(searched[key], now_ms)
        if timestamp is not None:
            return timestamp, key
    if log_record.observed_time_unix_nano:
        return log_record.observed_time_unix_nano // 1_000_000, "observed_time_unix_nano"
    return None, None


def interpret_log_record(
    log_record: Any, resource: dict[str, Any], scope: dict[str, Any], ctx: RequestContext
) -> ReceivedRecord:
    """One OTLP log record with its resource and scope, as Dynatrace stores it."""
    body = any_value(log_record.body) if log_record.HasField("body") else None
    own = key_values(log_record.attributes)
    if log_record.event_name:
        own.setdefault("event.name", log_record.event_name)
    body_map = body if isinstance(body, dict) and ctx.model == "flattened" else {}
    searched = {**own, **body_map}  # the body map is searched first, then the attributes
    timestamp_key, loglevel_key = find_special_keys(searched)
    content_key, content = _content(body, ctx)
    timestamp, timestamp_key = _timestamp(log_record, searched, timestamp_key, ctx.now_ms)
    timestamp = unless_ahead(timestamp, ctx.now_ms)

    loglevel_field = _loglevel(log_record)
    if loglevel_field is None and loglevel_key is not None:
        loglevel_field = loglevel_from_value(searched[loglevel_key]), loglevel_key
    loglevel, level_key = loglevel_field or ("NONE", None)

    from_body: set[str] = {content_key} if body_map and content_key is not None else set()
    from_own: set[str] = set()
    for key in (timestamp_key, level_key if (level_key or "").lower() in RECORD_FIELDS else None):
        if key is not None and key in searched:
            (from_body if key in body_map else from_own).add(key)
    attributes: dict[str, Any] = {}
    sources: tuple[tuple[dict[str, Any], set[str]], ...] = (
        (resource, set()),
        (scope, set()),
        (own, from_own),
        (body_map, from_body),
    )
    for source, consumed in sources:
        for key, value in source.items():
            if key not in consumed:
                add_attribute(attributes, key, value, ctx.model, otlp=True)
    return ReceivedRecord(
        timestamp=timestamp,
        timestamp_key=timestamp_key,
        loglevel=loglevel,
        loglevel_key=level_key,
        status=status_of(loglevel),
        content=content,
        content_key=content_key,
        attributes=overlay(attributes, ctx.extra_attributes),
        trace_id=log_record.trace_id.hex() or None,
        span_id=log_record.span_id.hex() or None,
        endpoint=ctx.endpoint,
        raw=log_record,
    )
