"""The emulator's reading of records, rule by rule (reference sections 1.4 to 1.8, 3.1)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from dt_exporter.testing._attributes import DataModel
from dt_exporter.testing._bodies import data_model, request_attributes
from dt_exporter.testing._interpret import (
    RequestContext,
    interpret_record,
    interpret_text,
    loglevel_from_value,
    status_of,
)
from dt_exporter.testing._otlp_view import interpret_log_record
from dt_exporter.testing._responses import Refusal
from dt_exporter.testing._timestamps import parse_timestamp


def epoch_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


NOW = epoch_ms("2025-12-18T00:00:00")
SAMPLE = epoch_ms("2025-12-17T22:12:31")


def view(
    record: dict[str, Any],
    model: DataModel = "flattened",
    extra: dict[str, str | list[str]] | None = None,
    now: int = NOW,
) -> Any:
    interpreted, _ = interpret_record(record, RequestContext(model, now, extra or {}, "logs"))
    return interpreted


# -- timestamp ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "expected_key"),
    [
        ({"timestamp": SAMPLE, "@timestamp": 1}, "timestamp"),
        ({"@timestamp": SAMPLE, "_timestamp": 1}, "@timestamp"),
        ({"_timestamp": SAMPLE, "eventtime": 1}, "_timestamp"),
        ({"eventtime": SAMPLE, "date": 1}, "eventtime"),
        ({"date": SAMPLE, "published_date": 1}, "date"),
        ({"published_date": SAMPLE, "syslog.timestamp": 1}, "published_date"),
        ({"syslog.timestamp": SAMPLE, "time": 1}, "syslog.timestamp"),
        ({"time": SAMPLE, "epochSecond": 1}, "time"),
        ({"epochSecond": SAMPLE, "startTime": 1}, "epochSecond"),
        ({"startTime": SAMPLE, "datetime": 1}, "startTime"),
        ({"datetime": SAMPLE, "ts": 1}, "datetime"),
        ({"ts": SAMPLE, "timeMillis": 1}, "ts"),
        ({"timeMillis": SAMPLE, "@t": 1}, "timeMillis"),
        ({"@t": SAMPLE}, "@t"),
        ({"@t": 1, "time": SAMPLE}, "time"),  # priority, not document order
        ({"TimeStamp": SAMPLE, "time": 1}, "TimeStamp"),  # any case
        ({"EPOCHSECOND": SAMPLE}, "EPOCHSECOND"),
        ({"timestamp": None, "time": SAMPLE}, "time"),  # null counts as absent
        ({"published": SAMPLE}, None),  # the documented key is published_date
        ({"message": "no time at all"}, None),
    ],
)
def test_timestamp_key_priority(record: dict[str, Any], expected_key: str | None) -> None:
    """The first key of Dynatrace's timestamp list wins, matched case-insensitively."""
    result = view(record)
    assert result.timestamp_key == expected_key
    assert result.timestamp == (SAMPLE if expected_key else None)
    if expected_key:
        assert expected_key not in result.attributes


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (SAMPLE // 1000, SAMPLE),  # epoch seconds
        (str(SAMPLE // 1000), SAMPLE),
        (SAMPLE, SAMPLE),  # epoch milliseconds
        (str(SAMPLE), SAMPLE),
        (SAMPLE / 1000 + 0.123, SAMPLE + 123),  # fractional seconds
        (f"{SAMPLE // 1000}.5", SAMPLE + 500),
        (SAMPLE * 1000 + 456, SAMPLE),  # microseconds, by size
        (100_000_000_000, 100_000_000_000_000),  # the seconds threshold is inclusive
        (100_000_000_001, 100_000_000_001),  # just above: milliseconds
        ("2025-12-17T22:12:31Z", SAMPLE),
        ("2025-12-17T22:12:31.0000", SAMPLE),  # no zone: UTC
        ("2025-12-17T22:12:31.250z", SAMPLE + 250),
        ("2025-12-17T23:42:31+01:30", SAMPLE),
        ("2025-12-17T17:12:31-0500", SAMPLE),
        ("2025-12-17T22:12:31.123456789Z", SAMPLE + 123),  # nanosecond fraction
        ("2025-12-17 22:12:31", SAMPLE),
        ("Dec 17 22:12:31", SAMPLE),  # RFC 3164: the year comes from the clock
        ("Dec  7 22:12:31", epoch_ms("2025-12-07T22:12:31")),
        (SAMPLE * 1_000_000, None),  # nanoseconds are beyond the top threshold
        ("2025-13-17T22:12:31Z", None),
        ("yesterday", None),
        ("", None),
        (True, None),
        ([SAMPLE], None),
        (float("nan"), None),
    ],
)
def test_timestamp_formats(value: object, expected: int | None) -> None:
    """Epoch s/ms/µs by magnitude, ISO 8601 and RFC 3164 are read; nothing else is."""
    assert parse_timestamp(value, NOW) == expected


def test_rfc3164_takes_last_year_across_new_year() -> None:
    """A syslog date without a year that would lie ahead belongs to the previous year."""
    new_year = epoch_ms("2026-01-01T00:05:00")
    assert parse_timestamp("Dec 31 23:59:00", new_year) == epoch_ms("2025-12-31T23:59:00")


@pytest.mark.parametrize("value", ["soon", "2025-02-30T00:00:00Z", {"a": 1}])
def test_unparsable_timestamp_uses_ingest_time_and_keeps_the_value(value: object) -> None:
    """An unreadable timestamp gives the ingest time and the `unparsed_timestamp` attribute."""
    result = view({"timestamp": value, "content": "x"}, model="raw")
    assert result.timestamp is None
    assert result.timestamp_key == "timestamp"
    expected = '{"a":1}' if isinstance(value, dict) else value
    assert result.attributes == {"unparsed_timestamp": expected}


@pytest.mark.parametrize(
    ("ahead_ms", "kept"), [(9 * 60_000, True), (10 * 60_000, True), (10 * 60_000 + 1, False)]
)
def test_future_timestamps_beyond_ten_minutes_become_ingest_time(ahead_ms: int, kept: bool) -> None:
    """A timestamp more than 10 minutes ahead is replaced by the ingest time."""
    result = view({"timestamp": NOW + ahead_ms})
    assert result.timestamp == (NOW + ahead_ms if kept else None)
    assert result.timestamp_key == "timestamp"


# -- loglevel -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "loglevel", "status"),
    [
        ("emergency", "EMERGENCY", "ERROR"),
        ("EMERG", "EMERGENCY", "ERROR"),
        ("fail", "EMERGENCY", "ERROR"),
        ("fatal", "EMERGENCY", "ERROR"),
        ("error", "ERROR", "ERROR"),
        ("Err", "ERROR", "ERROR"),
        ("alarm", "ALERT", "ERROR"),
        ("alert", "ALERT", "ERROR"),
        ("critical", "CRITICAL", "ERROR"),
        ("crucial", "CRITICAL", "ERROR"),
        ("severe", "SEVERE", "ERROR"),
        ("serious", "SEVERE", "ERROR"),
        ("warn", "WARN", "WARN"),
        ("WARNING", "WARN", "WARN"),
        ("note", "NOTICE", "INFO"),
        ("notice", "NOTICE", "INFO"),
        ("none", "NOTICE", "INFO"),  # the first-letter rule, applied as documented
        ("info", "INFO", "INFO"),
        ("Information", "INFO", "INFO"),
        ("debug", "DEBUG", "INFO"),
        ("TRACE", "DEBUG", "INFO"),
        ("Verbose", "DEBUG", "INFO"),
        ("trace-level", "DEBUG", "INFO"),
        ("tracing", "NONE", "NONE"),  # "trac" is not "trace"
        ("text", "NONE", "NONE"),  # "t" alone is not "trace"
        ("ok", "NONE", "NONE"),
        ("200", "NONE", "NONE"),
        ("", "NONE", "NONE"),
        (3, "NONE", "NONE"),  # numeric severities: no documented mapping
        (True, "NONE", "NONE"),
    ],
)
def test_loglevel_first_letter_rule(value: object, loglevel: str, status: str) -> None:
    """Values map by their first letters, ignoring case; `status` is grouped from loglevel."""
    assert loglevel_from_value(value) == loglevel
    assert status_of(loglevel) == status
    result = view({"level": value, "content": "x"})
    assert (result.loglevel, result.status, result.loglevel_key) == (loglevel, status, "level")


@pytest.mark.parametrize(
    ("record", "key", "loglevel", "kept_attributes"),
    [
        ({"loglevel": "error", "status": "warn"}, "loglevel", "ERROR", {"status": "warn"}),
        ({"status": "warn", "severity": "error"}, "status", "WARN", {"severity": "error"}),
        (
            {"severity": "error", "level": "info"},
            "severity",
            "ERROR",
            {"severity": "error", "level": "info"},
        ),
        (
            {"level": "info", "syslog.severity": "err"},
            "level",
            "INFO",
            {"level": "info", "syslog.severity": "err"},
        ),
        ({"syslog.severity": "err"}, "syslog.severity", "ERROR", {"syslog.severity": "err"}),
        ({"LEVEL": "warning"}, "LEVEL", "WARN", {"LEVEL": "warning"}),
        ({"Status": "200", "level": "error"}, "Status", "NONE", {"level": "error"}),
        (
            {"loglevel": None, "level": "debug"},
            "level",
            "DEBUG",
            {"loglevel": None, "level": "debug"},
        ),
        ({"lvl": "error"}, None, "NONE", {"lvl": "error"}),
    ],
)
def test_loglevel_key_priority(
    record: dict[str, Any], key: str | None, loglevel: str, kept_attributes: dict[str, Any]
) -> None:
    """The first loglevel key in priority order is read; only `loglevel`/`status` are consumed."""
    result = view({**record, "content": "x"})
    assert (result.loglevel_key, result.loglevel) == (key, loglevel)
    assert result.attributes == kept_attributes


# -- content --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "record", "key", "content", "attributes"),
    [
        ("flattened", {"content": "c", "message": "m"}, "content", "c", {"message": "m"}),
        ("flattened", {"message": "m", "payload": "p"}, "message", "m", {"payload": "p"}),
        ("flattened", {"payload": "p", "body": "b"}, "payload", "p", {"body": "b"}),
        ("flattened", {"body": "b", "log": "l"}, "body", "b", {"log": "l"}),
        ("flattened", {"log": "l"}, "log", "l", {}),
        ("flattened", {"content": 5}, "content", "5", {}),
        ("flattened", {"content": True}, "content", "true", {}),
        ("flattened", {"content": {"a": 1}, "message": "m"}, "message", "m", {"content.a": 1}),
        ("flattened", {"content": ["a", 5], "log": "l"}, "log", "l", {"content": ["a", "5"]}),
        ("flattened", {"content": None, "log": "l"}, "log", "l", {"content": None}),
        ("flattened", {"Message": "m"}, None, '{"Message":"m"}', {"Message": "m"}),
        ("flattened", {"_raw": "r", "n": 1}, None, '{"_raw":"r","n":1}', {"_raw": "r", "n": 1}),
        ("raw", {"_raw": "r", "n": 1}, "_raw", "r", {"n": 1}),
        ("raw", {"log": "l", "_raw": "r"}, "log", "l", {"_raw": "r"}),
        ("raw", {"message": ["a", 5]}, "message", '["a",5]', {}),
        ("raw", {"message": {"a": 1}}, "message", '{"a":1}', {}),
        ("raw", {"message": 7}, "message", "7", {}),
        ("raw", {"n": 1}, None, "", {"n": 1}),
    ],
)
def test_content_keys_per_data_model(
    model: DataModel,
    record: dict[str, Any],
    key: str | None,
    content: str,
    attributes: dict[str, Any],
) -> None:
    """Content comes from the documented keys; what qualifies and the default differ by model."""
    result = view(record, model=model)
    assert (result.content_key, result.content) == (key, content)
    assert result.attributes == attributes


def test_text_body_is_one_record_with_request_attributes() -> None:
    """A `text/plain` body is the content of one record, with ingest time and NONE."""
    ctx = RequestContext("flattened", NOW, {"team": "core"}, "logs")
    result = interpret_text("line one\nline two", ctx)
    assert (result.content, result.timestamp, result.loglevel) == (
        "line one\nline two",
        None,
        "NONE",
    )
    assert result.attributes == {"team": "core"}


# -- attributes per data model ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "record", "attributes"),
    [
        ("flattened", {"test": {"a": 1, "b": {"c": "x"}}}, {"test.a": 1, "test.b.c": "x"}),
        ("raw", {"test": {"a": 1, "b": {"c": "x"}}}, {"test": '{"a":1,"b":{"c":"x"}}'}),
        (
            "flattened",
            {"n": 1, "f": 1.5, "b": False, "z": None},
            {"n": 1, "f": 1.5, "b": False, "z": None},
        ),
        (
            "raw",
            {"n": 1, "f": 1.5, "b": False, "z": None},
            {"n": 1, "f": 1.5, "b": False, "z": None},
        ),
        ("flattened", {"a": [1, 2.5, None]}, {"a": [1, 2.5, None]}),
        ("flattened", {"a": [1, "x"]}, {"a": ["1", "x"]}),
        ("flattened", {"a": [1, True]}, {"a": ["1", "true"]}),
        ("flattened", {"a": [True, None]}, {"a": [True, None]}),
        ("raw", {"a": [{"k": 1}, [2]]}, {"a": ['{"k":1}', "[2]"]}),
        ("flattened", {"a": {"b": [{"k": 1}]}}, {"a.b": ['{"k":1}']}),
        ("flattened", {"empty": {}}, {}),
        (
            "flattened",
            {"host.name": "a", "host": {"name": "b"}},
            {"host.name": "a", "overwritten1.host.name": "b"},
        ),
        (
            "flattened",
            {"host": {"name": "b"}, "host.name": "a"},
            {"host.name": "b", "overwritten1.host.name": "a"},
        ),
        (
            "raw",
            {"host.name": "a", "host": {"name": "b"}},
            {"host.name": "a", "host": '{"name":"b"}'},
        ),
    ],
)
def test_attributes_per_data_model(
    model: DataModel, record: dict[str, Any], attributes: dict[str, Any]
) -> None:
    """Objects flatten to dotted keys or become JSON strings; arrays hold one type."""
    assert view({**record, "content": "x"}, model=model).attributes == attributes


@pytest.mark.parametrize(
    ("record", "attributes", "cut"),
    [
        ({"a": {"b": {"c": {"d": {"e": 1}}}}}, {"a.b.c.d.e": 1}, False),
        ({"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}, "k": 2}, {"k": 2}, True),
        ({"a": {"b": {"c": {"d": {"e": {}}}}}}, {}, False),
        ({"a": {"b": {"c": {"d": {"e": {"f": 1}, "g": 2}}}}}, {"a.b.c.d.g": 2}, True),
    ],
)
def test_flattened_nesting_is_cut_after_five_levels(
    record: dict[str, Any], attributes: dict[str, Any], cut: bool
) -> None:
    """Deeper than 5 levels is removed in the flattened model, and the record is flagged."""
    ctx = RequestContext("flattened", NOW, {}, "logs")
    result, was_cut = interpret_record({**record, "content": "x"}, ctx)
    assert (result.attributes, was_cut) == (attributes, cut)


def test_trace_and_span_ids_move_to_their_fields() -> None:
    """`trace_id` and `span_id` strings become the record's own fields."""
    result = view({"content": "x", "trace_id": "a" * 32, "span_id": "b" * 16, "k": 1})
    assert (result.trace_id, result.span_id, result.attributes) == ("a" * 32, "b" * 16, {"k": 1})


# -- request-level attributes and options --------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "header", "query", "attributes"),
    [
        (
            {"team": "body"},
            "team=header",
            [("team", "query")],
            {"team": "query", "overwritten1.team": "body"},
        ),
        ({"team": "body"}, "team=header", [], {"team": "header", "overwritten1.team": "body"}),
        ({}, "team=header", [("team", "query")], {"team": "query"}),
        (
            {"team": "body", "overwritten1.team": "x"},
            "",
            [("team", "q")],
            {"team": "q", "overwritten1.team": "x", "overwritten2.team": "body"},
        ),
        ({}, "a=1&a=2&b=x%20y", [], {"a": ["1", "2"], "b": "x y"}),
        ({}, "", [("tag", "1"), ("tag", "2")], {"tag": ["1", "2"]}),
        (
            {},
            "",
            [
                ("structure", "raw"),
                ("content-type", "text/plain"),
                ("Content-Type", "x"),
                ("api-token", "t"),
            ],
            {},
        ),
    ],
)
def test_query_beats_header_beats_body(
    body: dict[str, Any], header: str, query: list[tuple[str, str]], attributes: dict[str, Any]
) -> None:
    """Query beats `X-Dynatrace-Attr` beats body; an overridden body value is `overwrittenN.`."""
    extra = request_attributes(query, [header] if header else [])
    assert view({**body, "content": "x"}, extra=extra).attributes == attributes


@pytest.mark.parametrize(
    ("query", "header", "model"),
    [
        ([], None, "flattened"),
        ([("structure", "raw")], None, "raw"),
        ([], "structure=raw", "raw"),
        ([("structure", "flattened")], "structure=raw", "flattened"),
        ([], "other=1&structure=RAW", "raw"),
    ],
)
def test_data_model_choice(query: list[tuple[str, str]], header: str | None, model: str) -> None:
    """`structure` in the query beats `X-Dynatrace-Options`; the default is flattened."""
    assert data_model(query, header, "flattened") == model


def test_invalid_structure_is_refused() -> None:
    """An unknown `structure` value is a 400."""
    with pytest.raises(Refusal) as refusal:
        data_model([("structure", "nested")], None, "flattened")
    assert refusal.value.status == 400


# -- OTLP records (reference section 3.1) -------------------------------------------------------


def any_value(value: Any) -> AnyValue:
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=key_values(value)))
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    return AnyValue(string_value=value)


def key_values(values: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in values.items()]


def otlp_view(log_record: LogRecord, model: DataModel = "flattened", **sources: Any) -> Any:
    ctx = RequestContext(model, NOW, {}, "otlp")
    return interpret_log_record(
        log_record, sources.get("resource", {}), sources.get("scope", {}), ctx
    )


@pytest.mark.parametrize(
    ("text", "number", "loglevel", "key"),
    [
        ("WARN", 17, "WARN", "severity_text"),
        ("FATAL", 0, "FATAL", "severity_text"),  # a Dynatrace loglevel is kept as is
        ("trace", 0, "TRACE", "severity_text"),
        ("warning", 0, "WARN", "severity_text"),  # other text: first-letter rule
        ("", 1, "TRACE", "severity_number"),
        ("", 5, "DEBUG", "severity_number"),
        ("", 9, "INFO", "severity_number"),
        ("", 13, "WARN", "severity_number"),
        ("", 20, "ERROR", "severity_number"),
        ("", 24, "FATAL", "severity_number"),
        ("", 0, "NONE", None),
    ],
)
def test_otlp_loglevel_from_severity(
    text: str, number: int, loglevel: str, key: str | None
) -> None:
    """SeverityText first, then SeverityNumber by OpenTelemetry's ranges."""
    result = otlp_view(LogRecord(severity_text=text, severity_number=number))  # type: ignore[arg-type]
    assert (result.loglevel, result.loglevel_key) == (loglevel, key)


def test_otlp_name_clash_resource_scope_record() -> None:
    """On a clash the resource keeps the name, scope gets overwritten1., record overwritten2."""
    record = LogRecord(time_unix_nano=SAMPLE * 1_000_000, attributes=key_values({"k": "record"}))
    result = otlp_view(record, resource={"k": "resource"}, scope={"k": "scope"})
    assert result.attributes == {
        "k": "resource",
        "overwritten1.k": "scope",
        "overwritten2.k": "record",
    }


@pytest.mark.parametrize(
    ("model", "content_key", "content", "attributes"),
    [
        ("flattened", "message", "hi", {"nested.a": "1", "level": "warn"}),
        ("raw", "body", '{"message":"hi","nested":{"a":"1"},"level":"warn"}', {}),
    ],
)
def test_otlp_map_body_per_data_model(
    model: DataModel, content_key: str, content: str, attributes: dict[str, Any]
) -> None:
    """A map body: its keys become attributes (flattened) or it is one JSON string (raw)."""
    body = any_value({"message": "hi", "nested": {"a": "1"}, "level": "warn"})
    result = otlp_view(LogRecord(body=body), model=model)
    assert (result.content_key, result.content, result.attributes) == (
        content_key,
        content,
        attributes,
    )
    assert result.loglevel == ("WARN" if model == "flattened" else "NONE")


def test_otlp_ids_bytes_and_deep_maps() -> None:
    """Trace/span ids are lower-case hex, bytes base64, maps deeper than 5 levels marked."""
    deep = {"a": {"b": {"c": {"d": {"e": {"f": "x"}}}}}}
    record = LogRecord(
        trace_id=bytes.fromhex("0AF7651916CD43DD8448EB211C80319C"),
        span_id=bytes.fromhex("B7AD6B7169203331"),
        attributes=key_values({"raw": b"\x00\xff", **deep}),
        observed_time_unix_nano=SAMPLE * 1_000_000,
    )
    result = otlp_view(record)
    assert (result.trace_id, result.span_id) == (
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
    )
    assert result.attributes == {"raw": "AP8=", "a.b.c.d.e": "<truncated due to nesting limit>"}
    assert (result.timestamp, result.timestamp_key) == (SAMPLE, "observed_time_unix_nano")
