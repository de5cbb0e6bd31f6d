"""Normal handling of one request: checks in Dynatrace's order, then the endpoint's rules.

Order: endpoint availability (404), token (401/403), body encoding (400), size (413), content
type and payload (400), record count (413), the 24-hour rule (400 for the whole request), then
per-record problems (200 partial success) or success. No I/O, no clock: `now_ms` comes in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Final

from dt_exporter.testing import _bodies as bodies
from dt_exporter.testing._attributes import DataModel
from dt_exporter.testing._auth import TokenStore
from dt_exporter.testing._events import as_list, ingest_results, security_events
from dt_exporter.testing._interpret import (
    RequestContext,
    interpret_record,
    interpret_text,
    is_too_old,
)
from dt_exporter.testing._models import LogEndpoint, ReceivedRecord
from dt_exporter.testing._otlp_view import decode_request, empty_response, interpret_request
from dt_exporter.testing._responses import (
    PARTIAL_MESSAGE,
    Answer,
    Refusal,
    index_list,
    json_answer,
    partial_answer,
)
from dt_exporter.testing._routes import Route

_PROTOBUF_ONLY: Final = (
    "Only binary protobuf (Content-Type: application/x-protobuf) is supported; OTLP/JSON is not."
)


@dataclass(frozen=True, slots=True)
class Settings:
    """The emulator's configuration, read once per request."""

    max_request_bytes: int
    max_events_request_bytes: int
    max_records_per_request: int
    default_structure: DataModel
    security_endpoints: frozenset[str] | None
    new_security_path_enabled: bool
    legacy_security_path_enabled: bool


@dataclass(slots=True)
class Outcome:
    """The answer, and what it accepted."""

    answer: Answer
    records: list[ReceivedRecord] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    security_events: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Incoming:
    """One request, its body already decoded (or the problem decoding it)."""

    route: Route
    headers: Message
    query: Sequence[tuple[str, str]]
    body: bytes
    body_problem: Refusal | None = None


def decode_body(
    route: Route,
    headers: Message,
    query: Sequence[tuple[str, str]],
    raw: bytes,
    settings: Settings,
) -> Incoming:
    """Undo `Content-Encoding` up to the endpoint's size limit; keep any problem for later."""
    encoding = headers.get("Content-Encoding")
    if route.oneagent and encoding is not None:
        # The docs say only that OneAgent does not support Content-Encoding; we refuse it.
        problem = Refusal(400, "OneAgent's local ingest API does not support Content-Encoding.")
        return Incoming(route, headers, query, raw, problem)
    try:
        body = bodies.decode_content(raw, encoding, _limit(route, settings))
    except Refusal as problem:
        return Incoming(route, headers, query, raw, problem)
    return Incoming(route, headers, query, body)


def _limit(route: Route, settings: Settings) -> int:
    if route.group == "events":
        return settings.max_events_request_bytes
    return settings.max_request_bytes


def handle(
    incoming: Incoming,
    settings: Settings,
    tokens: TokenStore,
    now_ms: int,
    rejected: Sequence[int] | None = None,
) -> Outcome:
    """Everything Dynatrace would do with this request; `rejected` scripts a partial success."""
    try:
        return _handle(incoming, settings, tokens, now_ms, frozenset(rejected or ()))
    except Refusal as refusal:
        return Outcome(refusal.answer())


def _handle(
    incoming: Incoming,
    settings: Settings,
    tokens: TokenStore,
    now_ms: int,
    rejected: frozenset[int],
) -> Outcome:
    route, headers = incoming.route, incoming.headers
    if route.endpoint == "security":
        _check_security_path(route, settings)
    if route.scope is not None:
        query_token = bodies.query_value(incoming.query, "api-token")
        tokens.check(headers.get("Authorization"), query_token, route.scope)
    if incoming.body_problem is not None:
        raise incoming.body_problem
    limit = _limit(route, settings)
    if len(incoming.body) > limit:
        raise Refusal(413, f"Payload too large: the limit is {limit} bytes (uncompressed).")
    if route.group == "logs":
        endpoint: LogEndpoint = "oneagent_logs" if route.oneagent else "logs"
        return _logs(incoming, settings, now_ms, endpoint, rejected)
    if route.group == "otlp":
        return _otlp(incoming, settings, now_ms, rejected)
    items = as_list(_json_body(incoming, "event"), route.group)
    _check_count(len(items), settings)
    if route.group == "events":
        document, accepted = ingest_results(items, now_ms, rejected)
        return Outcome(json_answer(201, document), events=accepted)
    shaped = security_events(items, incoming.query, route.security_endpoint or "", route.legacy)
    if rejected:
        kept = [event for index, event in enumerate(shaped) if index not in rejected]
        return Outcome(partial_answer(rejected), security_events=kept)
    return Outcome(Answer(202), security_events=shaped)


def _check_security_path(route: Route, settings: Settings) -> None:
    enabled = (
        settings.legacy_security_path_enabled
        if route.legacy
        else settings.new_security_path_enabled
    )
    known = settings.security_endpoints
    if not enabled or (known is not None and route.security_endpoint not in known):
        raise Refusal(404, f"Ingest source not found: {route.security_endpoint}")


def _check_count(count: int, settings: Settings) -> None:
    if count > settings.max_records_per_request:
        raise Refusal(
            413,
            f"Too many records: {count}; the limit is {settings.max_records_per_request} "
            "per request.",
        )


def _json_body(incoming: Incoming, what: str) -> Any:
    kind, charset = bodies.media_type(incoming.headers.get("Content-Type"))
    if kind != bodies.JSON_TYPE:
        raise Refusal(400, f"Unsupported content type {kind or '(none)'!r}; use application/json.")
    return bodies.json_document(incoming.body, charset, f"the {what} payload")


def _context(
    incoming: Incoming, settings: Settings, now_ms: int, endpoint: LogEndpoint
) -> RequestContext:
    headers = incoming.headers
    model = bodies.data_model(
        incoming.query, headers.get("X-Dynatrace-Options"), settings.default_structure
    )
    extra = bodies.request_attributes(incoming.query, headers.get_all("X-Dynatrace-Attr") or [])
    return RequestContext(model, now_ms, extra, endpoint)


def _refuse_old(records: Sequence[tuple[int, ReceivedRecord]], now_ms: int) -> None:
    for index, record in records:
        if is_too_old(record, now_ms):
            raise Refusal(
                400,
                f"Log event {index} has a timestamp older than 24 hours "
                f"({record.timestamp} ms); no event of this request was ingested.",
            )


def _logs(
    incoming: Incoming,
    settings: Settings,
    now_ms: int,
    endpoint: LogEndpoint,
    rejected: frozenset[int],
) -> Outcome:
    in_query = bodies.query_value(incoming.query, "content-type")
    kind, charset = bodies.media_type(in_query or incoming.headers.get("Content-Type"))
    ctx = _context(incoming, settings, now_ms, endpoint)
    invalid: list[int] = []
    too_nested: list[int] = []
    records: list[tuple[int, ReceivedRecord]] = []
    if kind == bodies.TEXT_TYPE:
        text = bodies.to_utf8(incoming.body, charset).decode("utf-8", "replace")
        records.append((0, interpret_text(text, ctx)))
    elif kind == bodies.JSON_TYPE or kind in bodies.JSON_LINES_TYPES:
        items = bodies.log_items(incoming.body, kind, charset)
        _check_count(len(items), settings)
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                invalid.append(index)
                continue
            record, cut = interpret_record(item, ctx)
            records.append((index, record))
            if cut:
                too_nested.append(index)
    else:
        raise Refusal(
            400,
            f"Unsupported content type {kind or '(none)'!r}; use text/plain, application/json "
            "or a JSON Lines type.",
        )
    _refuse_old(records, now_ms)
    kept = [record for index, record in records if index not in rejected]
    if invalid or too_nested or rejected:
        return Outcome(partial_answer([*invalid, *rejected], too_nested), records=kept)
    return Outcome(Answer(204), records=kept)


def _otlp(incoming: Incoming, settings: Settings, now_ms: int, rejected: frozenset[int]) -> Outcome:
    kind, _ = bodies.media_type(incoming.headers.get("Content-Type"))
    if kind != bodies.PROTOBUF_TYPE:
        raise Refusal(400, _PROTOBUF_ONLY)
    try:
        request = decode_request(incoming.body)
    except ValueError as error:
        raise Refusal(400, f"Invalid OTLP protobuf message: {error}") from None
    records = interpret_request(request, _context(incoming, settings, now_ms, "otlp"))
    _check_count(len(records), settings)
    _refuse_old(list(enumerate(records)), now_ms)
    headers = {"Content-Type": bodies.PROTOBUF_TYPE}
    if rejected:
        kept = [record for index, record in enumerate(records) if index not in rejected]
        message = PARTIAL_MESSAGE + index_list(rejected)
        return Outcome(Answer(200, headers, empty_response(len(rejected), message)), records=kept)
    return Outcome(Answer(200, headers, empty_response()), records=records)
