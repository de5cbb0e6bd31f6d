"""RecordMapper: an OpenTelemetry log record becomes one Dynatrace JSON object within the limits."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.instrumentation.log_utils import std_to_otel
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from dt_exporter import _payload as payload
from dt_exporter.limits import CLASSIC, GRAIL, LimitProfile
from dt_exporter.mapping import RecordMapper

MARKER = "[TRUNCATED]"
PROFILES = pytest.mark.parametrize("profile", [GRAIL, CLASSIC], ids=["grail", "classic"])
SPECIAL_FIELDS = frozenset({"content", "timestamp", "loglevel"})
SCOPE = InstrumentationScope("checkout.worker", "2.1.0")
TS_NS = 1_700_000_000_123_456_789


def record(
    *,
    body: Any = None,
    attributes: Mapping[str, Any] | None = None,
    resource: Resource | None = None,
    scope: InstrumentationScope | None = SCOPE,
    **fields: Any,
) -> ReadableLogRecord:
    fields.setdefault("observed_timestamp", TS_NS)
    return ReadableLogRecord(
        LogRecord(body=body, attributes=attributes, **fields),  # type: ignore[arg-type]
        resource=resource if resource is not None else Resource({"service.name": "checkout"}),
        instrumentation_scope=scope,
    )


def map_one(
    rec: ReadableLogRecord, profile: LimitProfile = GRAIL
) -> tuple[dict[str, Any], Counter[str]]:
    truncations: Counter[str] = Counter()
    return RecordMapper(profile, truncations).map(rec), truncations


def on_the_wire(mapped: dict[str, Any]) -> dict[str, Any]:
    """What Dynatrace receives: the payload bytes, decoded as strict UTF-8 and parsed by json."""
    arrays = payload.json_arrays(
        [mapped], max_bytes=10**9, max_records=10, truncations=Counter(), dropped=Counter()
    )
    assert len(arrays) == 1
    data, count = arrays[0]
    assert count == 1
    (obj,) = json.loads(data.decode("utf-8"))
    return obj


def sdk_records(
    emits: list[dict[str, Any]], resource: Resource | None = None
) -> list[ReadableLogRecord]:
    """Records as the real SDK builds them: LoggerProvider -> processor -> in-memory exporter."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=resource or Resource.create({"service.name": "checkout"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger(SCOPE.name, SCOPE.version)
    for kwargs in emits:
        logger.emit(**kwargs)
    provider.shutdown()
    return list(exporter.get_finished_logs())


def span_context(trace_id: int, span_id: int, sampled: bool) -> Any:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    ctx = SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(ctx))


def attribute_keys(mapped: Mapping[str, Any]) -> list[str]:
    return [k for k in mapped if k not in SPECIAL_FIELDS]


# -- severity ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "loglevel"),
    [
        (std_to_otel(logging.DEBUG), "DEBUG"),
        (std_to_otel(logging.INFO), "INFO"),
        (std_to_otel(logging.WARNING), "WARN"),
        (std_to_otel(logging.ERROR), "ERROR"),
        (std_to_otel(logging.CRITICAL), "CRITICAL"),
        (SeverityNumber.TRACE, "DEBUG"),
        (SeverityNumber.TRACE4, "DEBUG"),
        (SeverityNumber.DEBUG4, "DEBUG"),
        (SeverityNumber.INFO4, "INFO"),
        (SeverityNumber.WARN4, "WARN"),
        (SeverityNumber.ERROR4, "ERROR"),
        (SeverityNumber.FATAL, "CRITICAL"),
        (SeverityNumber.FATAL4, "CRITICAL"),
    ],
)
def test_severity_number_maps_to_loglevel(severity: SeverityNumber, loglevel: str) -> None:
    """OTel severity ranges map to levels Dynatrace keeps; FATAL becomes CRITICAL, TRACE DEBUG."""
    (rec,) = sdk_records([{"body": "x", "severity_number": severity}])
    mapped, _ = map_one(rec)
    assert mapped["loglevel"] == loglevel


@pytest.mark.parametrize(
    ("text", "loglevel"),
    [
        ("fatal", "EMERGENCY"),
        ("Emergency", "EMERGENCY"),
        ("error", "ERROR"),
        ("Err", "ERROR"),
        ("alert", "ALERT"),
        ("critical", "CRITICAL"),
        ("severe", "SEVERE"),
        ("WARNING", "WARN"),
        ("  warn ", "WARN"),
        ("notice", "NOTICE"),
        ("information", "INFO"),
        ("debug", "DEBUG"),
        ("TRACE", "DEBUG"),
        ("Verbose", "DEBUG"),
    ],
)
def test_severity_text_alone_follows_the_first_letter_rule(text: str, loglevel: str) -> None:
    """Without a severity number, the text maps by Dynatrace's documented first-letter rule."""
    mapped, _ = map_one(record(body="x", severity_text=text))
    assert mapped["loglevel"] == loglevel


@pytest.mark.parametrize(
    ("number", "text"),
    [(None, None), (None, ""), (None, "unknown"), (SeverityNumber.UNSPECIFIED, None)],
)
def test_no_usable_severity_means_no_loglevel_key(
    number: SeverityNumber | None, text: str | None
) -> None:
    """With no usable severity the loglevel key is left out (Dynatrace then shows NONE)."""
    mapped, _ = map_one(record(body="x", severity_number=number, severity_text=text))
    assert "loglevel" not in mapped


def test_severity_number_wins_over_text() -> None:
    """When both are present the number decides the level."""
    mapped, _ = map_one(
        record(body="x", severity_number=SeverityNumber.INFO, severity_text="ERROR")
    )
    assert mapped["loglevel"] == "INFO"


# -- content, timestamp, trace -------------------------------------------------------------------


class Label(str):
    """A str subclass, like an enum member or a markup string."""


@pytest.mark.parametrize(
    ("body", "content"),
    [
        ("hello world", "hello world"),
        ("", ""),
        (None, ""),
        (Label("labelled"), "labelled"),
        (b"\x00\xffhi", base64.b64encode(b"\x00\xffhi").decode("ascii")),
        (bytearray(b"abc"), "YWJj"),
    ],
)
def test_string_none_and_bytes_bodies(body: Any, content: str) -> None:
    """A string body is the content as is, None is empty, bytes are base64."""
    mapped, _ = map_one(record(body=body))
    assert mapped["content"] == content


@pytest.mark.parametrize(
    "body",
    [
        {"user": "ada", "items": [1, 2.5, "x", None, True]},
        ["a", 5, {"b": False}],
        42,
        -7,
        True,
        1.5,
    ],
)
def test_structured_body_becomes_json_text(body: Any) -> None:
    """A mapping, sequence or number body is sent as its JSON text."""
    mapped, _ = map_one(record(body=body))
    assert isinstance(mapped["content"], str)
    assert json.loads(mapped["content"]) == body


@pytest.mark.parametrize(
    ("timestamp", "observed", "expected_ms"),
    [
        (TS_NS, 1_800_000_000_000_000_000, 1_700_000_000_123),
        (None, 1_700_000_000_999_999_999, 1_700_000_000_999),
        (1_000_000, 2_000_000_000, 1),
    ],
)
def test_timestamp_is_epoch_ms_with_observed_fallback(
    timestamp: int | None, observed: int, expected_ms: int
) -> None:
    """timestamp is epoch milliseconds of the record's time, else of its observed time."""
    mapped, _ = map_one(record(body="x", timestamp=timestamp, observed_timestamp=observed))
    assert mapped["timestamp"] == expected_ms


@pytest.mark.parametrize(
    ("trace_id", "span_id", "sampled", "trace_hex", "span_hex"),
    [
        (
            0x0AF7651916CD43DD8448EB211C80319C,
            0xB7AD6B7169203331,
            True,
            "0af7651916cd43dd8448eb211c80319c",
            "b7ad6b7169203331",
        ),
        (1, 0xFF, False, "00000000000000000000000000000001", "00000000000000ff"),
        (
            0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF,
            0xFFFFFFFFFFFFFFFF,
            True,
            "ffffffffffffffffffffffffffffffff",
            "ffffffffffffffff",
        ),
    ],
)
def test_trace_context_is_lower_hex(
    trace_id: int, span_id: int, sampled: bool, trace_hex: str, span_hex: str
) -> None:
    """trace_id is 32 and span_id 16 zero-padded lower-case hex digits, with the sampled flag."""
    (rec,) = sdk_records([{"body": "x", "context": span_context(trace_id, span_id, sampled)}])
    mapped = on_the_wire(map_one(rec)[0])
    assert mapped["trace_id"] == trace_hex
    assert mapped["span_id"] == span_hex
    assert mapped["dt.trace_sampled"] is sampled


def test_no_span_context_means_no_trace_keys() -> None:
    """A record emitted outside any span carries no trace_id/span_id."""
    (rec,) = sdk_records([{"body": "x"}])
    mapped, _ = map_one(rec)
    assert "trace_id" not in mapped
    assert "span_id" not in mapped


# -- attributes ----------------------------------------------------------------------------------


def test_resource_and_scope_on_every_record() -> None:
    """Every record of a batch carries the resource attributes and otel.scope.name/version."""
    resource = Resource.create({"service.name": "checkout", "deployment.environment": "prod"})
    records = sdk_records([{"body": f"line {i}"} for i in range(3)], resource=resource)
    mapper = RecordMapper(GRAIL, Counter())
    for i, rec in enumerate(records):
        mapped = mapper.map(rec)
        assert mapped["content"] == f"line {i}"
        assert mapped["service.name"] == "checkout"
        assert mapped["deployment.environment"] == "prod"
        assert mapped["otel.scope.name"] == "checkout.worker"
        assert mapped["otel.scope.version"] == "2.1.0"


def test_record_attributes_win_over_resource() -> None:
    """On a key clash the record's own attribute replaces the resource's."""
    resource = Resource({"service.name": "from-resource", "host.name": "web-1"})
    mapped, _ = map_one(
        record(body="x", resource=resource, attributes={"service.name": "from-record"})
    )
    assert mapped["service.name"] == "from-record"
    assert mapped["host.name"] == "web-1"


def test_nested_mappings_are_flattened_to_dotted_keys() -> None:
    """A mapping attribute becomes dotted keys, one per leaf, and no key for the mapping itself."""
    mapped, _ = map_one(
        record(
            body="x",
            attributes={"http": {"request": {"method": "GET"}, "status_code": 200}, "ok": True},
        )
    )
    assert mapped["http.request.method"] == "GET"
    assert mapped["http.status_code"] == 200
    assert mapped["ok"] is True
    assert "http" not in mapped
    assert "http.request" not in mapped


@pytest.mark.parametrize("key", ["content", "timestamp", "loglevel", "trace_id", "span_id"])
def test_special_field_keys_are_renamed(key: str) -> None:
    """An attribute named like a special field becomes attr.<key> and cannot replace the field."""
    (rec,) = sdk_records(
        [
            {
                "body": "the body",
                "timestamp": TS_NS,
                "severity_number": SeverityNumber.WARN,
                "attributes": {key: "from-attribute"},
                "context": span_context(0xABC, 0xDEF, True),
            }
        ]
    )
    mapped, _ = map_one(rec)
    assert mapped[f"attr.{key}"] == "from-attribute"
    assert mapped["content"] == "the body"
    assert mapped["timestamp"] == 1_700_000_000_123
    assert mapped["loglevel"] == "WARN"
    assert mapped["trace_id"] == "00000000000000000000000000000abc"
    assert mapped["span_id"] == "0000000000000def"


def test_special_field_key_in_resource_is_renamed() -> None:
    """A resource attribute named content is renamed too."""
    mapped, _ = map_one(record(body="real", resource=Resource({"content": "resource"})))
    assert mapped["content"] == "real"
    assert mapped["attr.content"] == "resource"


def test_event_name_is_an_attribute() -> None:
    """The record's event name is sent as event.name."""
    (rec,) = sdk_records([{"body": "x", "event_name": "user.login"}])
    mapped, _ = map_one(rec)
    assert mapped["event.name"] == "user.login"


# -- limits --------------------------------------------------------------------------------------


@PROFILES
@pytest.mark.parametrize("unit", ["k", "é", "€", "😀"])
def test_long_key_is_cut_on_a_character_boundary(profile: LimitProfile, unit: str) -> None:
    """A key over max_key_bytes is cut to at most that many UTF-8 bytes, whole characters only."""
    width = len(unit.encode())
    key = unit * (profile.max_key_bytes // width + 5)
    mapped, truncations = map_one(record(body="x", attributes={key: "v"}), profile)
    expected_key = unit * (profile.max_key_bytes // width)
    assert mapped[expected_key] == "v"
    assert truncations["key"] == 1


@PROFILES
def test_key_at_the_limit_is_kept(profile: LimitProfile) -> None:
    """A key of exactly max_key_bytes is neither cut nor counted."""
    key = "k" * profile.max_key_bytes
    mapped, truncations = map_one(record(body="x", attributes={key: "v"}), profile)
    assert mapped[key] == "v"
    assert truncations["key"] == 0


@PROFILES
@pytest.mark.parametrize("unit", ["v", "é", "€", "😀"])
def test_long_value_is_cut_with_marker(profile: LimitProfile, unit: str) -> None:
    """A value over max_value_bytes ends with [TRUNCATED], fits the limit, and is counted."""
    width = len(unit.encode())
    value = unit * (profile.max_value_bytes // width + 10)
    mapped, truncations = map_one(record(body="x", attributes={"v": value}), profile)
    budget = profile.max_value_bytes - len(MARKER)
    assert mapped["v"] == unit * (budget // width) + MARKER
    assert len(mapped["v"].encode()) <= profile.max_value_bytes
    assert truncations["value"] == 1


@PROFILES
def test_value_at_the_limit_is_kept(profile: LimitProfile) -> None:
    """A value of exactly max_value_bytes is sent whole and not counted."""
    value = "€" * (profile.max_value_bytes // 3) + "v" * (profile.max_value_bytes % 3)
    mapped, truncations = map_one(record(body="x", attributes={"v": value}), profile)
    assert mapped["v"] == value
    assert truncations["value"] == 0


@PROFILES
@pytest.mark.parametrize("unit", ["c", "é", "€", "😀"])
def test_long_content_is_cut_with_marker(profile: LimitProfile, unit: str) -> None:
    """A body over max_content_bytes is cut on a character boundary, marked and counted."""
    width = len(unit.encode())
    body = unit * (profile.max_content_bytes // width + 10)
    mapped, truncations = map_one(record(body=body), profile)
    budget = profile.max_content_bytes - len(MARKER)
    assert mapped["content"] == unit * (budget // width) + MARKER
    assert truncations["content"] == 1


@PROFILES
def test_structured_body_over_the_limit_is_cut(profile: LimitProfile) -> None:
    """A mapping body whose JSON text is too long is cut like a string body."""
    body = {"items": ["é" * 50] * (profile.max_content_bytes // 50)}
    mapped, truncations = map_one(record(body=body), profile)
    assert mapped["content"].endswith(MARKER)
    assert len(mapped["content"].encode()) <= profile.max_content_bytes
    assert truncations["content"] == 1


@PROFILES
def test_attribute_count_is_capped_and_every_dropped_one_counted(profile: LimitProfile) -> None:
    """At most max_attributes attributes survive; each one left out is counted."""
    attributes = {f"a{i}": i for i in range(profile.max_attributes + 20)}
    mapped, truncations = map_one(record(body="x", attributes=attributes), profile)
    assert len(attribute_keys(mapped)) <= profile.max_attributes
    kept = sum(1 for k in mapped if k in attributes)
    assert truncations["attributes"] == len(attributes) - kept
    assert mapped["content"] == "x"


@PROFILES
def test_flattening_counts_towards_the_attribute_cap(profile: LimitProfile) -> None:
    """One mapping attribute with many leaves is capped like many attributes."""
    wide = {f"leaf{i}": i for i in range(profile.max_attributes * 2)}
    mapped, truncations = map_one(record(body="x", attributes={"wide": wide}), profile)
    assert len(attribute_keys(mapped)) <= profile.max_attributes
    kept = sum(1 for k in mapped if k.startswith("wide."))
    assert truncations["attributes"] == len(wide) - kept


@PROFILES
@pytest.mark.parametrize(
    ("value", "expected", "counted"),
    [
        (list(range(40)), list(range(32)), 1),
        (list(range(32)), list(range(32)), 0),
        (tuple(f"s{i}" for i in range(33)), [f"s{i}" for i in range(32)], 1),
    ],
)
def test_arrays_keep_at_most_32_values(
    profile: LimitProfile, value: Any, expected: list[Any], counted: int
) -> None:
    """A multi-value attribute keeps its first 32 values; a cut is counted."""
    mapped, truncations = map_one(record(body="x", attributes={"arr": value}), profile)
    assert mapped["arr"] == expected
    assert truncations["array"] == counted


def nested(depth: int, leaf: Any) -> Any:
    """`depth` mappings inside one another: nested(2, 1) == {"l1": {"l2": 1}}."""
    value = leaf
    for level in range(depth, 0, -1):
        value = {f"l{level}": value}
    return value


@PROFILES
def test_five_levels_of_nesting_are_flattened(profile: LimitProfile) -> None:
    """An attribute with five nested mappings becomes one dotted key with the leaf value."""
    mapped, truncations = map_one(record(body="x", attributes={"n": nested(5, "leaf")}), profile)
    assert mapped["n.l1.l2.l3.l4.l5"] == "leaf"
    assert truncations["nesting"] == 0


@PROFILES
def test_nesting_deeper_than_five_becomes_json_text(profile: LimitProfile) -> None:
    """Below the fifth level the rest of the mapping is kept as JSON text, and counted."""
    mapped, truncations = map_one(record(body="x", attributes={"n": nested(8, "leaf")}), profile)
    deep_key = "n.l1.l2.l3.l4.l5"
    assert isinstance(mapped[deep_key], str)
    assert json.loads(mapped[deep_key]) == {"l6": {"l7": {"l8": "leaf"}}}
    assert not any(k.startswith(deep_key + ".") for k in mapped)
    assert truncations["nesting"] == 1


@PROFILES
def test_counts_do_not_depend_on_the_resource_cache(profile: LimitProfile) -> None:
    """Each record carrying an over-long resource value counts its own truncation."""
    resource = Resource({"big": "r" * (profile.max_value_bytes + 1)})
    truncations: Counter[str] = Counter()
    mapper = RecordMapper(profile, truncations)
    for _ in range(3):
        assert mapper.map(record(body="x", resource=resource))["big"].endswith(MARKER)
    assert truncations["value"] == 3


# -- exotic values -------------------------------------------------------------------------------


class Unrepresentable:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class StrRaises:
    def __str__(self) -> str:
        raise ValueError("no str")

    def __repr__(self) -> str:
        return "StrRaises()"


def cyclic_dict() -> dict[str, Any]:
    d: dict[str, Any] = {"a": 1}
    d["self"] = d
    return d


def cyclic_list() -> list[Any]:
    items: list[Any] = [1]
    items.append(items)
    return items


def deep_list(depth: int) -> list[Any]:
    outer: list[Any] = []
    current = outer
    for _ in range(depth):
        inner: list[Any] = []
        current.append(inner)
        current = inner
    return outer


UTC_DATETIME = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)

EXOTIC_ATTRIBUTES = [
    pytest.param(b"\x00\xff", {"k": "AP8="}, id="bytes"),
    pytest.param(bytearray(b"ab"), {"k": "YWI="}, id="bytearray"),
    pytest.param(memoryview(b"abc"), {"k": "YWJj"}, id="memoryview"),
    pytest.param(float("nan"), {"k": "NaN"}, id="nan"),
    pytest.param(float("inf"), {"k": "Infinity"}, id="inf"),
    pytest.param(float("-inf"), {"k": "-Infinity"}, id="-inf"),
    pytest.param([1.0, float("nan")], {"k": [1.0, "NaN"]}, id="nan-in-array"),
    pytest.param(frozenset({"b", "c", "a"}), {"k": ["a", "b", "c"]}, id="frozenset"),
    pytest.param({"y", "x"}, {"k": ["x", "y"]}, id="set"),
    pytest.param(Decimal("1.10"), {"k": "1.10"}, id="decimal"),
    pytest.param(UTC_DATETIME, {"k": "2024-01-02T03:04:05+00:00"}, id="datetime"),
    pytest.param(dt.date(2024, 1, 2), {"k": "2024-01-02"}, id="date"),
    pytest.param(2**64 - 1, {"k": 2**64 - 1}, id="u64-max"),
    pytest.param(-(2**63), {"k": -(2**63)}, id="i64-min"),
    pytest.param(2**64, {"k": "18446744073709551616"}, id="2**64"),
    pytest.param(-(2**63) - 1, {"k": "-9223372036854775809"}, id="below-i64"),
    pytest.param(10**4000, {"k": "1" + "0" * 4000}, id="4001-digits"),
    pytest.param(Unrepresentable(), {"k": "<unrepresentable Unrepresentable>"}, id="no-str-repr"),
    pytest.param(StrRaises(), {"k": "StrRaises()"}, id="str-raises"),
    pytest.param(cyclic_dict(), {"k.a": 1, "k.self": "<cyclic>"}, id="cyclic-dict"),
    pytest.param(cyclic_list(), {"k": [1, "<cyclic>"]}, id="cyclic-list"),
    pytest.param("a\ud800b", {"k": "a\ufffdb"}, id="lone-surrogate"),
    pytest.param(["\udfff"], {"k": ["\ufffd"]}, id="surrogate-in-array"),
    pytest.param("a\x00b\x01\x1b[31m\x7f", {"k": "a\x00b\x01\x1b[31m\x7f"}, id="nul-control"),
    pytest.param([[1, 2], {"a": None}], {"k": ["[1,2]", '{"a":null}']}, id="containers-in-array"),
]


@pytest.mark.parametrize(("value", "expected"), EXOTIC_ATTRIBUTES)
def test_exotic_attribute_values_have_documented_fallbacks(
    value: Any, expected: dict[str, Any]
) -> None:
    """Odd attribute values map to their documented JSON-safe form, never raising."""
    mapped = on_the_wire(map_one(record(body="x", attributes={"k": value}))[0])
    for key, wanted in expected.items():
        assert mapped[key] == wanted
    assert mapped["content"] == "x"


EXOTIC_BODIES = [
    pytest.param(b"\xff\xfe", "//4=", id="bytes"),
    pytest.param(float("nan"), json.dumps("NaN"), id="nan"),
    pytest.param(float("-inf"), json.dumps("-Infinity"), id="-inf"),
    pytest.param({"v": float("inf")}, json.dumps({"v": "Infinity"}), id="inf-in-mapping"),
    pytest.param(frozenset({"b", "a"}), json.dumps(["a", "b"]), id="frozenset"),
    pytest.param(Decimal("2.50"), json.dumps("2.50"), id="decimal"),
    pytest.param(UTC_DATETIME, json.dumps("2024-01-02T03:04:05+00:00"), id="datetime"),
    pytest.param(2**70, json.dumps(str(2**70)), id="2**70"),
    pytest.param(Unrepresentable(), json.dumps("<unrepresentable Unrepresentable>"), id="no-repr"),
    pytest.param(cyclic_dict(), json.dumps({"a": 1, "self": "<cyclic>"}), id="cyclic-dict"),
    pytest.param(cyclic_list(), json.dumps([1, "<cyclic>"]), id="cyclic-list"),
    pytest.param("\ud800", "\ufffd", id="lone-surrogate"),
    pytest.param("x\udc80y", "x\ufffdy", id="surrogate-escape"),
    pytest.param({"k\ud800": "v\udfff"}, json.dumps({"k\ufffd": "v\ufffd"}), id="surrogate-in-map"),
    pytest.param("a\x00b\x01\x1f", "a\x00b\x01\x1f", id="nul-control"),
]


@pytest.mark.parametrize(("body", "content"), EXOTIC_BODIES)
def test_exotic_bodies_have_documented_content(body: Any, content: str) -> None:
    """Odd bodies give a deterministic content string that survives the payload encoder."""
    mapped = on_the_wire(map_one(record(body=body))[0])
    if content.startswith(("{", "[", '"')):
        assert json.loads(mapped["content"]) == json.loads(content)
    else:
        assert mapped["content"] == content


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(10**5000, id="int-over-4300-digits"),
        pytest.param(-(10**5000), id="negative-int-over-4300-digits"),
        pytest.param(deep_list(300), id="300-deep-list"),
        pytest.param(nested(300, 1), id="300-deep-mapping"),
        pytest.param(deep_list(5000), id="5000-deep-list"),
        pytest.param([deep_list(300)], id="deep-list-in-array"),
    ],
)
@pytest.mark.parametrize("where", ["body", "attribute"])
def test_extreme_values_never_raise(value: Any, where: str) -> None:
    """Values past Python's or orjson's own limits still map to JSON-safe text, never raising."""
    rec = record(body=value) if where == "body" else record(body="x", attributes={"k": value})
    mapped = on_the_wire(map_one(rec)[0])
    assert isinstance(mapped["content"], str)
    if where == "attribute":
        leaves = [v for k, v in mapped.items() if k == "k" or k.startswith("k.")]
        assert leaves
        for leaf in leaves:
            assert isinstance(leaf, (str, list))


@PROFILES
def test_lone_surrogates_survive_truncation_as_replacement_characters(
    profile: LimitProfile,
) -> None:
    """A lone surrogate becomes U+FFFD even when its string is also cut to the limit."""
    value = "\ud800" + "v" * profile.max_value_bytes
    body = "\udfff" + "c" * profile.max_content_bytes
    mapped = on_the_wire(map_one(record(body=body, attributes={"k": value}), profile)[0])
    assert mapped["k"].startswith("\ufffdv")
    assert mapped["k"].endswith(MARKER)
    assert mapped["content"].startswith("\ufffdc")
    assert mapped["content"].endswith(MARKER)


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("k\ud800", id="surrogate"),
        pytest.param(("tuple", 1), id="tuple"),
        pytest.param(7, id="int"),
        pytest.param(None, id="none"),
    ],
)
def test_odd_keys_become_text(key: Any) -> None:
    """Non-string and invalid-Unicode attribute keys become valid text keys, never raising."""
    mapped = on_the_wire(map_one(record(body="x", attributes={key: "v"}))[0])
    assert "v" in mapped.values()
    assert all(isinstance(k, str) for k in mapped)
