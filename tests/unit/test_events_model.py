"""Events: the model, validation against the documented limits, fitting, routing rules, and the
mapping of OpenTelemetry event records (all pure, no I/O)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from opentelemetry import trace
from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from dt_exporter._responses import ingest_results, one_event_rejections
from dt_exporter.config import EVENT_TYPES, ExporterConfig
from dt_exporter.errors import ConfigError
from dt_exporter.event_model import (
    Event,
    EventRoute,
    EventRoutes,
    EventType,
    InvalidEventError,
    event_from_record,
    fit,
    security_event_from_record,
    validate,
)
from dt_exporter.limits import GRAIL
from dt_exporter.mapping import RecordMapper

MARKER = "[TRUNCATED]"
NOW_MS = 1_700_000_000_000
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
TS_NS = NOW_MS * 1_000_000 + 456_789


def event(**fields: Any) -> Event:
    fields.setdefault("event_type", EventType.CUSTOM_INFO)
    fields.setdefault("title", "Deployed 1.4.2")
    return Event(**fields)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# -- the model ---------------------------------------------------------------------------------


def test_to_json_has_camel_case_keys_and_leaves_unset_fields_out():
    """A minimal event is exactly eventType and title."""
    assert event().to_json() == {"eventType": "CUSTOM_INFO", "title": "Deployed 1.4.2"}


def test_to_json_carries_every_field_it_was_given():
    """Every field maps to its documented EventIngest key."""
    body = event(event_type=EventType.CUSTOM_DEPLOYMENT, start_time_ms=NOW_MS,
                 end_time_ms=NOW_MS + 1, timeout_minutes=30,
                 entity_selector="type(SERVICE),entityName.equals(checkout)",
                 properties={"version": "1.4.2"}).to_json()
    assert body == {
        "eventType": "CUSTOM_DEPLOYMENT", "title": "Deployed 1.4.2", "startTime": NOW_MS,
        "endTime": NOW_MS + 1, "timeout": 30,
        "entitySelector": "type(SERVICE),entityName.equals(checkout)",
        "properties": {"version": "1.4.2"},
    }


def test_property_values_are_sent_as_strings():
    """Booleans become true/false, numbers their JSON text, non-finite floats their names."""
    body = event(properties={"ok": True, "no": False, "n": 42, "x": 1.5,
                             "nan": float("nan"), "inf": float("-inf")}).to_json()
    assert body["properties"] == {"ok": "true", "no": "false", "n": "42", "x": "1.5",
                                  "nan": "NaN", "inf": "-Infinity"}


def test_the_documented_event_types_and_only_those():
    """EventType is the eleven types of the Events API v2 reference."""
    assert {t.value for t in EventType} == {
        "AVAILABILITY_EVENT", "CUSTOM_ALERT", "CUSTOM_ANNOTATION", "CUSTOM_CONFIGURATION",
        "CUSTOM_DEPLOYMENT", "CUSTOM_INFO", "ERROR_EVENT", "MARKED_FOR_TERMINATION",
        "PERFORMANCE_EVENT", "RESOURCE_CONTENTION_EVENT", "WARNING",
    }
    assert EventType.CUSTOM_DEPLOYMENT.is_info and not EventType.ERROR_EVENT.is_info


def test_a_type_name_string_is_accepted_and_becomes_the_enum():
    """Event("CUSTOM_ALERT", ...) holds EventType.CUSTOM_ALERT."""
    assert Event("CUSTOM_ALERT", "t").event_type is EventType.CUSTOM_ALERT  # type: ignore[arg-type]


def test_an_unknown_type_fails_at_construction():
    """An unknown event type raises InvalidEventError, a ValueError, naming the valid types."""
    with pytest.raises(InvalidEventError, match="CUSTOM_DEPLOYMENT") as info:
        Event("DEPLOYMENT", "t")  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "fields",
    [
        {"title": 42},
        {"start_time_ms": 1.5},
        {"timeout_minutes": True},
        {"entity_selector": ["type(HOST)"]},
        {"properties": [("k", "v")]},
        {"properties": {1: "v"}},
        {"properties": {"k": None}},
        {"properties": {"k": {"nested": 1}}},
    ],
    ids=["title", "start", "timeout-bool", "selector", "not-mapping", "key", "none", "nested"],
)
def test_values_of_the_wrong_kind_fail_at_construction(fields):
    """Programming errors surface where the event is built, not later in a sender thread."""
    with pytest.raises(InvalidEventError):
        event(**fields)


def test_properties_are_a_read_only_copy():
    """Changing the caller's dict afterwards does not change the event."""
    given = {"k": "v"}
    built = event(properties=given)
    given["k"] = "changed"
    assert built.properties == {"k": "v"}
    with pytest.raises(TypeError):
        built.properties["k"] = "x"  # type: ignore[index]


def test_equal_events_are_equal_and_hash_alike():
    """Events are values: usable in sets and as dict keys."""
    first = event(properties={"a": "1", "b": 2})
    second = event(properties={"b": 2, "a": "1"})
    assert first == second and len({first, second}) == 1


# -- validate ----------------------------------------------------------------------------------


def test_a_valid_event_has_no_problems():
    """validate() returns an empty list for an event inside every limit."""
    assert validate(event(timeout_minutes=15, properties={"k" * 100: "v" * 4096})) == []


@pytest.mark.parametrize("title", ["", "   "])
def test_title_is_required(title):
    """An empty or blank title is a problem (Dynatrace answers 400)."""
    assert validate(event(title=title)) == ["title is required"]


def test_at_most_100_properties():
    """101 properties is a problem; 100 is fine."""
    assert validate(event(properties={f"k{i}": "v" for i in range(100)})) == []
    [problem] = validate(event(properties={f"k{i}": "v" for i in range(101)}))
    assert "101 properties" in problem


def test_keys_up_to_100_characters():
    """A 101-character key is a problem."""
    [problem] = validate(event(properties={"k" * 101: "v"}))
    assert "longer than 100" in problem


def test_values_up_to_4096_characters_counted_as_utf16():
    """4,096 characters pass; 4,097 do not; an emoji counts twice, as Java counts it."""
    assert validate(event(properties={"k": "v" * 4096})) == []
    assert len(validate(event(properties={"k": "v" * 4097}))) == 1
    assert len(validate(event(properties={"k": "😀" * 2049}))) == 1  # 2,049 code points


@pytest.mark.parametrize("key", ["dt.event.allow_davis_merge", "dt.davis.timeout",
                                 "dt.entity.host", "dtx.custom", "service.dt.x"])
def test_allowed_keys(key):
    """dt.event.*, dt.davis.* and dt.entity.* are allowed, as is anything outside dt.*."""
    assert validate(event(properties={key: "v"})) == []


@pytest.mark.parametrize("key", ["dt.trace_id", "dt.security.risk", "dt.events.x"])
def test_other_dt_keys_are_refused(key):
    """Every other dt.* key is disallowed by the Events API."""
    [problem] = validate(event(properties={key: "v"}))
    assert "reserved" in problem


@pytest.mark.parametrize(("timeout", "ok"), [(0, False), (1, True), (360, True), (361, False)])
def test_timeout_from_1_to_360_minutes(timeout, ok):
    """The timeout must lie within 1..360 minutes."""
    assert (validate(event(timeout_minutes=timeout)) == []) is ok


def test_end_before_start_is_a_problem():
    """endTime < startTime is refused; equal times are fine."""
    assert validate(event(start_time_ms=NOW_MS, end_time_ms=NOW_MS)) == []
    assert validate(event(start_time_ms=NOW_MS, end_time_ms=NOW_MS - 1)) == [
        "end time lies before start time"
    ]


def test_negative_times_are_problems():
    """Epoch milliseconds cannot be negative."""
    assert len(validate(event(start_time_ms=-1, end_time_ms=-1))) == 2


@pytest.mark.parametrize(
    ("event_type", "offset_ms", "ok"),
    [
        (EventType.ERROR_EVENT, -6 * HOUR_MS + MINUTE_MS, True),
        (EventType.ERROR_EVENT, -7 * HOUR_MS, False),
        (EventType.ERROR_EVENT, 4 * MINUTE_MS, True),
        (EventType.ERROR_EVENT, 6 * MINUTE_MS, False),
        (EventType.CUSTOM_DEPLOYMENT, -7 * HOUR_MS, True),
        (EventType.CUSTOM_DEPLOYMENT, -29 * DAY_MS, True),
        (EventType.CUSTOM_DEPLOYMENT, -31 * DAY_MS, False),
        (EventType.CUSTOM_INFO, 6 * DAY_MS, True),
        (EventType.CUSTOM_INFO, 8 * DAY_MS, False),
    ],
)
def test_start_time_window_depends_on_the_type(event_type, offset_ms, ok):
    """Problem-opening events: 6 h back, 5 min ahead; info events: 30 days back, 7 days ahead."""
    built = event(event_type=event_type, start_time_ms=NOW_MS + offset_ms)
    assert (validate(built, now_ms=NOW_MS) == []) is ok
    assert validate(built) == []  # without a clock, the window is not checked


def test_an_end_time_in_the_past_without_start_is_a_problem_given_a_clock():
    """Without startTime, the start is now: an earlier end is refused."""
    assert validate(event(end_time_ms=NOW_MS - 1), now_ms=NOW_MS) != []


# -- fit ---------------------------------------------------------------------------------------


def test_fit_returns_the_same_event_when_nothing_needs_fixing():
    """Nothing changed, nothing reported."""
    original = event(properties={"k": "v"}, timeout_minutes=5)
    fitted, changes = fit(original)
    assert fitted is original and changes == {}


def test_fit_cuts_a_long_value_to_the_limit_with_the_marker():
    """A 5,000-character value becomes exactly 4,096 characters ending in [TRUNCATED]."""
    fitted, changes = fit(event(properties={"log": "x" * 5000, "keep": 7}))
    value = fitted.properties["log"]
    assert isinstance(value, str) and len(value) == 4096 and value.endswith(MARKER)
    assert fitted.properties["keep"] == 7
    assert changes == {"value": 1} and validate(fitted) == []


def test_fit_never_splits_a_surrogate_pair_and_stays_within_utf16_limit():
    """Emoji are cut whole and the result fits 4,096 UTF-16 code units."""
    fitted, _ = fit(event(properties={"k": "😀" * 3000}))
    value = str(fitted.properties["k"])
    assert value.endswith(MARKER) and utf16_len(value) <= 4096
    assert set(value.removesuffix(MARKER)) == {"😀"}


def test_fit_cuts_a_long_key_with_the_marker():
    """A 150-character key becomes 100 characters ending in [TRUNCATED]."""
    fitted, changes = fit(event(properties={"k" * 150: "v"}))
    [key] = fitted.properties
    assert len(key) == 100 and key.endswith(MARKER) and changes == {"key": 1}


def test_fit_drops_keys_that_collide_after_the_cut():
    """Two long keys with the same first 89 characters: the second is dropped and counted."""
    fitted, changes = fit(event(properties={"k" * 150: "first", "k" * 160: "second"}))
    assert list(fitted.properties.values()) == ["first"]
    assert changes == {"key": 2, "properties": 1}


def test_fit_drops_refused_dt_keys_and_keeps_allowed_ones():
    """dt.trace_id goes; dt.entity.host stays."""
    fitted, changes = fit(event(properties={"dt.trace_id": "a", "dt.entity.host": "HOST-1"}))
    assert dict(fitted.properties) == {"dt.entity.host": "HOST-1"}
    assert changes == {"reserved_key": 1}


def test_fit_keeps_the_first_100_properties():
    """Properties beyond the 100th are dropped in order and counted."""
    fitted, changes = fit(event(properties={f"k{i:03}": i for i in range(130)}))
    assert list(fitted.properties) == [f"k{i:03}" for i in range(100)]
    assert changes == {"properties": 30}


def test_fit_lowers_a_timeout_over_360_as_dynatrace_does():
    """timeout 500 becomes 360; a timeout of 0 is left for validate to refuse."""
    fitted, changes = fit(event(timeout_minutes=500))
    assert fitted.timeout_minutes == 360 and changes == {"timeout": 1}
    unfixable, _ = fit(event(timeout_minutes=0))
    assert validate(unfixable) != []


def test_fit_cannot_invent_a_title():
    """An event without a title stays invalid after fit."""
    fitted, _ = fit(event(title="", properties={"k": "x" * 5000}))
    assert validate(fitted) == ["title is required"]


# -- routing rules -----------------------------------------------------------------------------


def test_routes_parse_the_documented_example():
    """The DT_EXPORTER_EVENT_ROUTES example yields one events and one security rule."""
    routes = EventRoutes.parse("deployment=events:CUSTOM_DEPLOYMENT,finding.*=security:my-scanner")
    first, second = routes.routes
    assert (first.pattern, first.target, first.event_type) == (
        "deployment", "events", EventType.CUSTOM_DEPLOYMENT)
    assert (second.pattern, second.target, second.endpoint_name) == (
        "finding.*", "security", "my-scanner")
    assert second.is_glob and not first.is_glob


def test_routes_accept_bare_events_lower_case_types_and_spaces():
    """`events` means CUSTOM_INFO; type names are case-insensitive; blanks are ignored."""
    routes = EventRoutes.parse(" a = events , b=events:custom_alert ,, ")
    assert [(r.pattern, r.event_type) for r in routes.routes] == [
        ("a", EventType.CUSTOM_INFO), ("b", EventType.CUSTOM_ALERT)]
    assert str(routes) == "a=events:CUSTOM_INFO,b=events:CUSTOM_ALERT"


def test_routes_from_a_mapping():
    """A {pattern: destination} mapping parses like the string form."""
    routes = EventRoutes.parse({"deployment": "events:CUSTOM_DEPLOYMENT"})
    assert routes.route_for("deployment") is routes.routes[0]


def test_routes_from_env_and_keyword_wins():
    """from_env reads DT_EXPORTER_EVENT_ROUTES; an explicit value wins; unset means none."""
    env = {"DT_EXPORTER_EVENT_ROUTES": "x=events"}
    assert [r.pattern for r in EventRoutes.from_env(env).routes] == ["x"]
    assert [r.pattern for r in EventRoutes.from_env(env, routes="y=events").routes] == ["y"]
    assert EventRoutes.from_env({}).routes == ()


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("deployment", "expected pattern="),
        ("deployment=logs", "unknown destination"),
        ("deployment=events:DEPLOYMENT", "unknown event type"),
        ("finding=security", "needs an endpoint name"),
        ("finding=security:a/b", "not an endpoint name"),
        ("=events", "empty event name"),
        ("a=events,a=events:WARNING", "routed twice"),
    ],
)
def test_bad_routes_raise_config_error_naming_the_variable(spec, complaint):
    """Every malformed rule is a ConfigError on DT_EXPORTER_EVENT_ROUTES with a reason."""
    with pytest.raises(ConfigError, match=complaint) as info:
        EventRoutes.parse(spec)
    assert info.value.setting == "DT_EXPORTER_EVENT_ROUTES"


def test_an_exact_name_wins_over_an_earlier_glob():
    """`deploy*` listed first does not catch `deployment` when it has its own rule."""
    routes = EventRoutes.parse("deploy*=events:CUSTOM_INFO,deployment=events:CUSTOM_DEPLOYMENT")
    route = routes.route_for("deployment")
    assert route is not None and route.event_type == EventType.CUSTOM_DEPLOYMENT
    other = routes.route_for("deploy.start")
    assert other is not None and other.event_type == EventType.CUSTOM_INFO


def test_globs_are_tried_in_order_and_unmatched_names_stay_logs():
    """The first matching glob wins; no match, an empty or missing name give None."""
    routes = EventRoutes.parse("finding.*=security:a,*=security:b")
    assert routes.route_for("finding.cve").endpoint_name == "a"  # type: ignore[union-attr]
    assert routes.route_for("other").endpoint_name == "b"  # type: ignore[union-attr]
    narrow = EventRoutes.parse("finding.*=security:a")
    assert narrow.route_for("findings") is None
    assert narrow.route_for("") is None and narrow.route_for(None) is None


# -- OpenTelemetry records -> events -------------------------------------------------------------


def record(
    *,
    event_name: str | None = "deployment",
    body: Any = None,
    attributes: Mapping[str, Any] | None = None,
    resource: Mapping[str, Any] | None = None,
    with_span: bool = False,
    **fields: Any,
) -> ReadableLogRecord:
    fields.setdefault("timestamp", TS_NS)
    if with_span:
        context = SpanContext(0xABC, 0xDEF, False, TraceFlags(TraceFlags.SAMPLED))
        fields["context"] = trace.set_span_in_context(NonRecordingSpan(context))
    return ReadableLogRecord(
        LogRecord(event_name=event_name, body=body, attributes=attributes, **fields),
        resource=Resource(dict(resource or {"service.name": "checkout"})),
        instrumentation_scope=InstrumentationScope("ci.pipeline"),
    )


def test_event_name_becomes_title_and_timestamp_start_time():
    """Title is the event name; startTime is the record's timestamp in ms."""
    mapped = event_from_record(record(), EventType.CUSTOM_DEPLOYMENT)
    assert mapped.event_type is EventType.CUSTOM_DEPLOYMENT
    assert mapped.title == "deployment" and mapped.start_time_ms == NOW_MS
    assert mapped.properties["event.name"] == "deployment"


def test_observed_timestamp_is_used_when_there_is_no_timestamp():
    """A record emitted without a timestamp starts at its observed time."""
    mapped = event_from_record(record(timestamp=None, observed_timestamp=TS_NS + 2_000_000),
                               EventType.CUSTOM_INFO)
    assert mapped.start_time_ms == NOW_MS + 2


def test_control_attributes_set_fields_and_are_not_properties():
    """event.title, event.entity_selector and event.timeout_minutes fill the event's fields."""
    mapped = event_from_record(record(attributes={
        "event.title": "Deployed 1.4.2", "event.entity_selector": "type(SERVICE)",
        "event.timeout_minutes": 20, "version": "1.4.2"}), EventType.CUSTOM_DEPLOYMENT)
    assert mapped.title == "Deployed 1.4.2"
    assert mapped.entity_selector == "type(SERVICE)" and mapped.timeout_minutes == 20
    assert not {"event.title", "event.entity_selector", "event.timeout_minutes"} & set(
        mapped.properties)
    assert mapped.properties["version"] == "1.4.2"


def test_blank_or_wrongly_typed_control_attributes_are_ignored():
    """A blank event.title falls back to the name; a string timeout is not a timeout."""
    mapped = event_from_record(record(attributes={"event.title": " ",
                                                  "event.timeout_minutes": "20"}),
                               EventType.CUSTOM_INFO)
    assert mapped.title == "deployment" and mapped.timeout_minutes is None


def test_attributes_are_flattened_and_stringified():
    """Nested mappings become dotted keys, lists JSON text, bytes base64; None is left out."""
    mapped = event_from_record(record(attributes={
        "build": {"id": 7, "ok": True}, "tags": ("a", "b"), "blob": b"\x00\x01",
        "missing": None}), EventType.CUSTOM_INFO)
    body = mapped.to_json()["properties"]
    assert body["build.id"] == "7" and body["build.ok"] == "true"
    assert orjson.loads(body["tags"]) == ["a", "b"]
    assert body["blob"] == "AAE="
    assert "missing" not in body


def test_body_becomes_content_and_span_ids_become_properties():
    """The body is `content`; a record inside a span carries trace_id and span_id."""
    mapped = event_from_record(record(body="rolled out to eu-west", with_span=True),
                               EventType.CUSTOM_INFO)
    assert mapped.properties["content"] == "rolled out to eu-west"
    assert mapped.properties["trace_id"] == f"{0xABC:032x}"
    assert mapped.properties["span_id"] == f"{0xDEF:016x}"
    assert "content" not in event_from_record(record(), EventType.CUSTOM_INFO).properties


def test_lists_and_deep_maps_follow_the_one_json_converter():
    """A list attribute, a map deeper than five and a cyclic body become JSON text by
    `text.json_tree`'s rules: bytes base64, huge ints as text, a cycle as "<cyclic>"."""
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    deep: Any = "leaf"
    for level in range(7, 0, -1):
        deep = {f"l{level}": deep}
    mapped = event_from_record(record(body=cyclic, attributes={
        "tags": [b"\x01", 2**70], "deep": deep}), EventType.CUSTOM_INFO)
    assert orjson.loads(str(mapped.properties["tags"])) == ["AQ==", str(2**70)]
    assert orjson.loads(str(mapped.properties["content"])) == [1, "<cyclic>"]
    assert orjson.loads(str(mapped.properties["deep.l1.l2.l3.l4.l5"])) == {"l6": {"l7": "leaf"}}


def test_a_structured_body_is_json_text():
    """A mapping body becomes compact JSON text in `content`."""
    mapped = event_from_record(record(body={"a": [1, 2]}), EventType.CUSTOM_INFO)
    assert orjson.loads(str(mapped.properties["content"])) == {"a": [1, 2]}


def test_service_identity_comes_from_the_resource_and_attributes_win():
    """service.* from the resource; the record's own attribute wins; other resource keys stay
    out."""
    mapped = event_from_record(
        record(attributes={"service.version": "from-record"},
               resource={"service.name": "checkout", "service.version": "from-resource",
                         "host.name": "box-1"}),
        EventType.CUSTOM_INFO)
    assert mapped.properties["service.name"] == "checkout"
    assert mapped.properties["service.version"] == "from-record"
    assert "host.name" not in mapped.properties


def test_a_big_record_fits_after_fit():
    """150 attributes, a refused dt.* key and a huge value map to an event that validates."""
    attributes: dict[str, Any] = {f"a{i}": i for i in range(150)}
    attributes.update({"dt.trace_sampled": True, "dt.entity.host": "HOST-1", "big": "x" * 9000})
    mapped = event_from_record(record(attributes=attributes), EventType.CUSTOM_INFO)
    fitted, changes = fit(mapped)
    assert validate(fitted) == []
    assert len(fitted.properties) == 100 and changes["reserved_key"] == 1


def test_security_mapping_is_one_flat_object():
    """A security event is the record as log ingest sees it: flat keys, name, time, content."""
    mapper = RecordMapper(GRAIL, Counter())
    mapped = security_event_from_record(
        record(event_name="finding.cve", body="CVE-2026-1", attributes={
            "vulnerability": {"id": "CVE-2026-1", "score": 9.8}}), mapper)
    assert mapped["event.name"] == "finding.cve"
    assert mapped["timestamp"] == NOW_MS and mapped["content"] == "CVE-2026-1"
    assert mapped["vulnerability.id"] == "CVE-2026-1" and mapped["vulnerability.score"] == 9.8
    assert mapped["service.name"] == "checkout" and mapped["otel.scope.name"] == "ci.pipeline"
    assert all(not isinstance(value, dict) for value in mapped.values())


# -- pure helpers of the clients ---------------------------------------------------------------


def test_events_compression_defaults_to_none():
    """Gzip on the Events API is undocumented, so events go uncompressed unless asked."""
    saas = {"DT_ENDPOINT": "https://abc12345.live.dynatrace.com", "DT_API_TOKEN": "dt0c01.x.y"}
    assert ExporterConfig.from_env(saas).events_compression == "none"
    env = {**saas, "DT_EXPORTER_EVENTS_COMPRESSION": "GZIP"}
    assert ExporterConfig.from_env(env).events_compression == "gzip"
    assert ExporterConfig.from_env(env, events_compression="none").events_compression == "none"
    with pytest.raises(ConfigError, match="DT_EXPORTER_EVENTS_COMPRESSION"):
        ExporterConfig.from_env({**saas, "DT_EXPORTER_EVENTS_COMPRESSION": "zstd"})


def test_route_event_types_are_the_event_model_types():
    """The names config.py accepts in DT_EXPORTER_EVENT_ROUTES are exactly `EventType`'s."""
    assert tuple(t.value for t in EventType) == EVENT_TYPES


def test_a_route_given_an_event_type_member_keeps_its_name():
    """`EventRoute(event_type=EventType.X)` stores the plain name, so `destination` reads it."""
    route = EventRoute("d", "events", event_type=EventType.CUSTOM_DEPLOYMENT)
    assert route.event_type == "CUSTOM_DEPLOYMENT" and type(route.event_type) is str
    assert route.destination == "events:CUSTOM_DEPLOYMENT"


def test_one_event_is_rejected_only_when_none_of_its_reports_is_ok():
    """Two reports (two matched hosts), one OK: the event was ingested."""
    def body(*statuses: str) -> bytes:
        return orjson.dumps({"reportCount": len(statuses), "eventIngestResults": [
            {"correlationId": f"c{i}", "status": s} for i, s in enumerate(statuses)]})

    assert one_event_rejections(201, body("OK"))[0] == 0
    assert one_event_rejections(201, body("INVALID_METADATA")) == (1, "INVALID_METADATA")
    assert one_event_rejections(201, body("OK", "INVALID_ENTITY_TYPE"))[0] == 0
    assert one_event_rejections(201, b"") == (0, "")
    assert ingest_results(body("OK", "INVALID_TIMESTAMPS")) == (
        ["c0", "c1"], ["OK", "INVALID_TIMESTAMPS"])
