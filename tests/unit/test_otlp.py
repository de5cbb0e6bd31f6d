"""dt_exporter._otlp: limits, exotic values, request cutting, split/count, partial success."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as PbLogRecord
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from dt_exporter import _otlp as otlp
from dt_exporter.limits import GRAIL, TRUNCATION_MARKER, LimitProfile

TIME_NS = 1_700_000_000_000_000_000
RESOURCE = Resource({"service.name": "checkout"})
SCOPE = InstrumentationScope("tests", "1.0")
#: Limits nothing in these tests reaches unless a test lowers one on purpose.
ROOMY = LimitProfile(
    name="grail", max_key_bytes=1_000, max_value_bytes=100_000, max_attributes=1_000,
    max_values_per_attribute=1_000, max_nesting_depth=50, max_content_bytes=1_000_000,
)


def make_record(
    body: Any = "hello",
    attributes: Mapping[str, Any] | None = None,
    *,
    resource: Resource | None = RESOURCE,
    scope: InstrumentationScope | None = SCOPE,
    **fields: Any,
) -> ReadableLogRecord:
    """A ReadableLogRecord built directly, so attribute values are exactly what the test says."""
    log = LogRecord(timestamp=TIME_NS, observed_timestamp=TIME_NS + 1, body=body,
                    attributes=attributes)
    for name, value in fields.items():
        setattr(log, name, value)
    return ReadableLogRecord(log_record=log, resource=resource,  # type: ignore[arg-type]
                             instrumentation_scope=scope)


@dataclasses.dataclass
class Encoded:
    requests: list[otlp.OtlpRequest]
    truncations: collections.Counter[str]
    dropped: collections.Counter[str]

    def messages(self) -> list[ExportLogsServiceRequest]:
        return [ExportLogsServiceRequest.FromString(r.data) for r in self.requests]

    def records(self) -> list[PbLogRecord]:
        return [lr for m in self.messages() for rl in m.resource_logs for sl in rl.scope_logs
                for lr in sl.log_records]

    def only(self) -> PbLogRecord:
        (record,) = self.records()
        return record


def encode(
    records: Sequence[ReadableLogRecord], profile: LimitProfile = ROOMY, **kwargs: Any
) -> Encoded:
    truncations: collections.Counter[str] = collections.Counter()
    dropped: collections.Counter[str] = collections.Counter()
    requests = otlp.encode_log_requests(
        records, profile, truncations=truncations, dropped=dropped, **kwargs
    )
    return Encoded(requests, truncations, dropped)


def attribute(record: PbLogRecord, key: str) -> AnyValue:
    (value,) = [kv.value for kv in record.attributes if kv.key == key]
    return value


def limits(**changes: int) -> LimitProfile:
    return dataclasses.replace(ROOMY, **changes)


def nested(depth: int, leaf: Any = 1) -> Any:
    """{"k1": {"k2": ... {"k<depth>": leaf}}}: `depth` maps."""
    value = leaf
    for level in range(depth, 0, -1):
        value = {f"k{level}": value}
    return value


def map_depth(value: AnyValue) -> tuple[int, AnyValue]:
    """How many kvlists lead down the first key of each; and the value at the bottom."""
    depth = 0
    while value.HasField("kvlist_value"):
        depth += 1
        value = value.kvlist_value.values[0].value
    return depth, value


# -- equivalence on plain records ----------------------------------------------------------------


def test_same_message_as_official_encoder_on_sdk_records(make_records: Any) -> None:
    """Genuine SDK records decode to exactly the message the official encoder builds."""
    records = make_records(20, with_span=True,
                           attributes=lambda i: {"i": i, "f": i / 3, "s": "x" * i, "b": i % 2 == 0})
    result = encode(records, GRAIL)
    (message,) = result.messages()
    assert message == encode_logs(records)
    assert result.requests[0].records == 20
    assert not result.truncations
    assert not result.dropped


def test_none_body_is_an_empty_anyvalue_present_as_official_sends_it() -> None:
    """A None body is sent as a present, empty AnyValue, like the official encoder does."""
    record = make_record(None)
    (message,) = encode([record]).messages()
    assert message == encode_logs([record])
    assert message.resource_logs[0].scope_logs[0].log_records[0].HasField("body")


def test_records_group_by_equal_resource_and_scope_in_first_seen_order() -> None:
    """Equal (not identical) resources share one ResourceLogs; order is first-seen."""
    other = Resource({"service.name": "billing"}, schema_url="https://schema/1")
    twin = Resource({"service.name": "checkout"})
    scope_b = InstrumentationScope("b", schema_url="https://scope/2", attributes={"a": 1})
    records = [
        make_record("1", resource=other),
        make_record("2"),
        make_record("3", resource=twin, scope=scope_b),
        make_record("4", resource=other, scope=None),
        make_record("5", resource=other),
    ]
    (message,) = encode(records).messages()
    assert message == encode_logs(records)
    assert [rl.schema_url for rl in message.resource_logs] == ["https://schema/1", ""]
    bodies = [[[lr.body.string_value for lr in sl.log_records] for sl in rl.scope_logs]
              for rl in message.resource_logs]
    assert bodies == [[["1", "5"], ["4"]], [["2"], ["3"]]]


# -- limits --------------------------------------------------------------------------------------


def test_long_key_is_cut_bare_and_counted() -> None:
    """A key over max_key_bytes is cut on a character boundary, without a marker."""
    key = "é" * 10  # 20 bytes
    result = encode([make_record(attributes={key: 1})], limits(max_key_bytes=15))
    (kv,) = result.only().attributes
    assert kv.key == "é" * 7
    assert result.truncations == {"key": 1}


def test_long_key_is_counted_every_time_it_is_seen() -> None:
    """A cut key is counted on each record, even though keys are cached."""
    records = [make_record(attributes={"k" * 50: i}) for i in range(3)]
    result = encode(records, limits(max_key_bytes=20))
    assert [r.attributes[0].key for r in result.records()] == ["k" * 20] * 3
    assert result.truncations == {"key": 3}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a" * 40, "a" * 9 + TRUNCATION_MARKER),
        ("ü" * 20, "ü" * 4 + TRUNCATION_MARKER),  # never half a character
        (("x" * 40,), None),  # inside an array too
        ({"m": "x" * 40}, None),  # and inside a map
    ],
)
def test_long_string_value_is_cut_with_marker(value: Any, expected: str | None) -> None:
    """String values over max_value_bytes are cut by truncate_utf8 wherever they are."""
    result = encode([make_record(attributes={"k": value})], limits(max_value_bytes=20))
    any_value = attribute(result.only(), "k")
    if expected is not None:
        assert any_value.string_value == expected
    text = str(any_value)
    assert TRUNCATION_MARKER in text
    assert result.truncations == {"value": 1}


def test_string_value_at_the_limit_is_kept() -> None:
    """A value of exactly max_value_bytes is not cut."""
    result = encode([make_record(attributes={"k": "a" * 20})], limits(max_value_bytes=20))
    assert attribute(result.only(), "k").string_value == "a" * 20
    assert not result.truncations


def test_long_bytes_value_is_cut_to_three_quarters() -> None:
    """Bytes are cut so their base64 text fits max_value_bytes."""
    result = encode([make_record(attributes={"k": b"\x00" * 100})], limits(max_value_bytes=20))
    assert attribute(result.only(), "k").bytes_value == b"\x00" * 15
    assert result.truncations == {"value": 1}


@pytest.mark.parametrize("body", ["c" * 500, "ж" * 300, "c" * 5000])
def test_long_string_body_is_cut_to_max_content_bytes(body: str) -> None:
    """A string body over max_content_bytes is cut with the marker, counted as content."""
    result = encode([make_record(body)], limits(max_content_bytes=100, max_value_bytes=10))
    content = result.only().body.string_value
    assert content.endswith(TRUNCATION_MARKER)
    assert len(content.encode()) <= 100
    assert result.truncations == {"content": 1}


def test_strings_inside_a_structured_body_use_the_value_limit() -> None:
    """A map body's strings are attribute-like values: max_value_bytes applies."""
    result = encode([make_record({"msg": "m" * 50})], limits(max_value_bytes=20))
    assert result.only().body.kvlist_value.values[0].value.string_value.endswith(
        TRUNCATION_MARKER)
    assert result.truncations == {"value": 1}


@pytest.mark.parametrize(
    ("resource_n", "scope_n", "record_n", "max_attributes", "kept", "dropped"),
    [
        (2, 1, 4, 10, 4, 0),
        (2, 1, 4, 7, 4, 0),
        (2, 1, 4, 6, 3, 1),
        (3, 3, 4, 6, 0, 4),
        (8, 0, 2, 6, 0, 2),  # resource alone over the budget: records keep nothing
    ],
)
def test_attribute_budget_counts_resource_and_scope_first(
    resource_n: int, scope_n: int, record_n: int, max_attributes: int, kept: int, dropped: int
) -> None:
    """Record attributes beyond max_attributes minus resource and scope ones are dropped."""
    resource = Resource({f"r{i}": i for i in range(resource_n)})
    scope = InstrumentationScope("s", attributes={f"s{i}": i for i in range(scope_n)})
    record = make_record(attributes={f"a{i}": i for i in range(record_n)},
                         resource=resource, scope=scope)
    result = encode([record], limits(max_attributes=max_attributes))
    out = result.only()
    assert [kv.key for kv in out.attributes] == [f"a{i}" for i in range(kept)]
    assert out.dropped_attributes_count == dropped
    expected = dropped + max(resource_n - max_attributes, 0)
    assert result.truncations["attributes"] == expected


def test_resource_over_the_budget_keeps_first_attributes_and_says_how_many_it_lost() -> None:
    """A resource with more than max_attributes is cut and gets dropped_attributes_count."""
    resource = Resource({f"r{i}": i for i in range(5)})
    result = encode([make_record(resource=resource)], limits(max_attributes=3))
    (message,) = result.messages()
    pb_resource = message.resource_logs[0].resource
    assert [kv.key for kv in pb_resource.attributes] == ["r0", "r1", "r2"]
    assert pb_resource.dropped_attributes_count == 2


def test_dropped_attributes_add_to_the_sdk_count() -> None:
    """The SDK's own dropped count (BoundedAttributes.dropped) is sent and ours is added."""
    attributes = BoundedAttributes(maxlen=3, attributes={f"a{i}": i for i in range(5)})
    assert attributes.dropped == 2
    result = encode([make_record(attributes=attributes)], limits(max_attributes=3))
    out = result.only()
    assert [kv.key for kv in out.attributes] == ["a2", "a3"]
    assert out.dropped_attributes_count == 3


@pytest.mark.parametrize("container", [list, tuple])
def test_long_array_keeps_its_first_values(container: Callable[[range], Any]) -> None:
    """Arrays over max_values_per_attribute keep the first values, counted once per array."""
    value = container(range(10))
    result = encode([make_record(attributes={"k": value, "n": {"inner": value}})],
                    limits(max_values_per_attribute=4))
    out = result.only()
    assert [v.int_value for v in attribute(out, "k").array_value.values] == [0, 1, 2, 3]
    inner = attribute(out, "n").kvlist_value.values[0].value
    assert len(inner.array_value.values) == 4
    assert result.truncations == {"array": 2}


@pytest.mark.parametrize(
    ("maps", "max_depth", "kept_maps", "truncated"),
    [
        (3, 3, 3, False),
        (4, 3, 3, True),
        (6, 5, 5, True),
        (5, 5, 5, False),
        (2, 0, 0, True),
    ],
)
def test_attribute_maps_deeper_than_the_nesting_limit_are_replaced(
    maps: int, max_depth: int, kept_maps: int, truncated: bool
) -> None:
    """An attribute's map value is depth 1; a map deeper than the limit becomes the marker."""
    result = encode([make_record(attributes={"a": nested(maps, "leaf")})],
                    limits(max_nesting_depth=max_depth))
    depth, bottom = map_depth(attribute(result.only(), "a"))
    assert depth == kept_maps
    expected = otlp.NESTING_MARKER if truncated else "leaf"
    assert bottom.string_value == expected
    assert result.truncations == ({"nesting": 1} if truncated else {})


def test_body_map_is_depth_zero_for_the_nesting_limit() -> None:
    """A map body's own keys are level one: it may hold one more map level than an attribute."""
    result = encode([make_record(nested(4, "leaf"))], limits(max_nesting_depth=3))
    depth, bottom = map_depth(result.only().body)
    assert (depth, bottom.string_value) == (4, "leaf")
    result = encode([make_record(nested(5, "leaf"))], limits(max_nesting_depth=3))
    depth, bottom = map_depth(result.only().body)
    assert (depth, bottom.string_value) == (4, otlp.NESTING_MARKER)


def test_empty_map_beyond_the_nesting_limit_stays_a_map() -> None:
    """An empty map adds no keys, so it is left as it is."""
    result = encode([make_record(attributes={"a": {"b": {}}})], limits(max_nesting_depth=1))
    inner = attribute(result.only(), "a").kvlist_value.values[0].value
    assert inner.HasField("kvlist_value")
    assert not result.truncations


# -- exotic values -------------------------------------------------------------------------------


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class ExplodingMapping(Mapping[str, int]):
    def __getitem__(self, key: str) -> int:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("boom")

    def __len__(self) -> int:
        return 1

    def __repr__(self) -> str:
        return "ExplodingMapping()"


def _cyclic_list() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


def _cyclic_dict() -> dict[str, Any]:
    value: dict[str, Any] = {"x": 1}
    value["self"] = value
    return value


def _deep_list(levels: int) -> list[Any]:
    value: list[Any] = [1]
    for _ in range(levels):
        value = [value]
    return value


def _flat(value: AnyValue) -> Any:
    """An AnyValue as plain Python, for comparisons."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_flat(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _flat(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


EXOTIC_VALUES: list[tuple[str, Any, Any, dict[str, int]]] = [
    ("lone surrogate", "a\udcffb", "a\ufffdb", {"invalid_unicode": 1}),
    ("nan", math.nan, "nan", {}),
    ("infinity", math.inf, math.inf, {}),
    ("int64 max", 2**63 - 1, 2**63 - 1, {}),
    ("int64 min", -(2**63), -(2**63), {}),
    ("negative int", -5, -5, {}),
    ("int beyond int64", 2**64, str(2**64), {"value_type": 1}),
    ("bytes", b"\x00\xff", b"\x00\xff", {}),
    ("bytearray", bytearray(b"ab"), b"ab", {}),
    ("memoryview", memoryview(b"cd"), b"cd", {}),
    ("set", {3, 1, 2}, ["1", "2", "3"], {"value_type": 1}),
    ("frozenset", frozenset({"b", "a"}), ["a", "b"], {"value_type": 1}),
    ("decimal", decimal.Decimal("1.50"), "1.50", {"value_type": 1}),
    ("datetime", datetime.datetime(2024, 5, 6, 7, 8, 9), "2024-05-06T07:08:09",
     {"value_type": 1}),
    ("date", datetime.date(2024, 5, 6), "2024-05-06", {"value_type": 1}),
    ("object", Unprintable(), "<unrepresentable Unprintable>", {"value_type": 1}),
    ("raising mapping", ExplodingMapping(), "ExplodingMapping()", {"value_type": 1}),
    ("cyclic list", _cyclic_list(), [1, "<cyclic>"], {"cyclic": 1}),
    ("cyclic dict", _cyclic_dict(), {"x": 1, "self": "<cyclic>"}, {"cyclic": 1}),
    ("non-string keys", {1: "a", (2, 3): "b"}, {"1": "a", "(2, 3)": "b"}, {}),
    ("none", None, None, {}),
    ("bool", True, True, {}),
    ("empty string", "", "", {}),
    ("empty array", [], [], {}),
]


@pytest.mark.parametrize(
    ("value", "expected", "counted"),
    [case[1:] for case in EXOTIC_VALUES],
    ids=[case[0] for case in EXOTIC_VALUES],
)
def test_exotic_attribute_value(value: Any, expected: Any, counted: dict[str, int]) -> None:
    """Values OTLP cannot carry as they are become the documented AnyValue; nothing raises."""
    result = encode([make_record(attributes={"k": value})])
    got = _flat(attribute(result.only(), "k"))
    if expected == "nan":
        assert math.isnan(got)
    else:
        assert got == expected
        assert type(got) is type(expected)
    assert result.truncations == counted
    assert not result.dropped


@pytest.mark.parametrize(
    ("value", "expected", "counted"),
    [case[1:] for case in EXOTIC_VALUES if case[0] != "nan"],
    ids=[case[0] for case in EXOTIC_VALUES if case[0] != "nan"],
)
def test_exotic_body(value: Any, expected: Any, counted: dict[str, int]) -> None:
    """The same rules hold for a record's body, which the SDK does not clean."""
    result = encode([make_record(value)])
    assert _flat(result.only().body) == expected
    assert result.truncations == counted


def test_deep_array_chain_does_not_exhaust_the_stack() -> None:
    """Thousands of nested arrays end in the nesting marker instead of a RecursionError."""
    result = encode([make_record(attributes={"k": _deep_list(5000)})])
    value = attribute(result.only(), "k")
    depth = 0
    while value.HasField("array_value"):
        value = value.array_value.values[0]
        depth += 1
    assert value.string_value == otlp.NESTING_MARKER
    assert depth == otlp.MAX_CONTAINER_DEPTH
    assert result.truncations == {"nesting": 1}


def test_lone_surrogates_in_keys_body_and_severity_text_are_scrubbed() -> None:
    """Every text field gets U+FFFD for lone surrogates and still serialises."""
    record = make_record("b\ud800", {"k\udc80": "v"}, severity_text="W\udfff",
                         event_name="e\ud801")
    result = encode([record])
    out = result.only()
    assert out.body.string_value == "b\ufffd"
    assert out.attributes[0].key == "k\ufffd"
    assert out.severity_text == "W\ufffd"
    assert out.event_name == "e\ufffd"
    assert result.truncations == {"invalid_unicode": 4}


@pytest.mark.parametrize(
    ("fields", "check"),
    [
        ({"timestamp": None}, lambda r: r.time_unix_nano == 0),
        ({"timestamp": -1}, lambda r: r.time_unix_nano == 0),
        ({"timestamp": 2**64}, lambda r: r.time_unix_nano == 0),
        ({"timestamp": 1.5}, lambda r: r.time_unix_nano == 0),
        ({"observed_timestamp": 0}, lambda r: r.observed_time_unix_nano == 0),
        ({"trace_id": -1, "span_id": 7}, lambda r: (r.trace_id, r.span_id[-1]) == (b"", 7)),
        ({"trace_id": 2**128, "span_id": 0}, lambda r: r.trace_id == b""),
        ({"trace_id": 5, "span_id": 2**64}, lambda r: (r.trace_id[-1], r.span_id) == (5, b"")),
        ({"trace_flags": 2**32}, lambda r: r.flags == 0),
        ({"trace_flags": 0x103}, lambda r: r.flags == 0x103),
        ({"severity_number": 9}, lambda r: r.severity_number == 9),
        ({"severity_number": SeverityNumber.FATAL4}, lambda r: r.severity_number == 24),
        ({"severity_number": "INFO"}, lambda r: r.severity_number == 0),
        ({"severity_text": 42}, lambda r: r.severity_text == "42"),
        ({"severity_text": ["W"]}, lambda r: r.severity_text == "['W']"),
        ({"event_name": {"e": 1}}, lambda r: r.event_name == "{'e': 1}"),
        ({"trace_flags": "01"}, lambda r: r.flags == 0),
        ({"event_name": "checkout.done"}, lambda r: r.event_name == "checkout.done"),
    ],
)
def test_record_fields_that_do_not_fit_are_left_out(
    fields: dict[str, Any], check: Callable[[PbLogRecord], bool]
) -> None:
    """Timestamps, ids, flags and severity that do not fit their field are omitted, not raised."""
    result = encode([make_record(**fields)])
    assert check(result.only())
    assert not result.dropped


def test_record_without_the_readable_log_record_shape_is_dropped_and_counted() -> None:
    """Anything that is not a ReadableLogRecord is counted as unencodable; the rest go out."""
    result = encode([make_record("ok"), object(), make_record("ok too")])  # type: ignore[list-item]
    assert [r.body.string_value for r in result.records()] == ["ok", "ok too"]
    assert result.dropped == {"unencodable": 1}


def test_limits_of_one_profile_do_not_leak_into_another_through_caches() -> None:
    """Keys, resources and texts cached under one profile are re-checked under another."""
    resource = Resource({"r" * 30: "v" * 30})
    record = make_record("b", {"k" * 30: "x"}, resource=resource, severity_text="S" * 30)
    assert not encode([record]).truncations
    tight = encode([record], limits(max_key_bytes=10, max_value_bytes=20))
    assert tight.truncations == {"key": 2, "value": 2}
    assert not encode([record]).truncations


def test_resource_truncations_are_counted_once_per_call() -> None:
    """A cut inside a resource counts once per batch, not once per record."""
    resource = Resource({"r": "v" * 30})
    records = [make_record(str(i), resource=resource) for i in range(5)]
    profile = limits(max_value_bytes=20)
    assert encode(records, profile).truncations == {"value": 1}
    assert encode(records, profile).truncations == {"value": 1}


# -- request cutting -----------------------------------------------------------------------------


def _varied_records(count: int, seed: int = 7) -> list[ReadableLogRecord]:
    rng = random.Random(seed)
    resources = [RESOURCE, Resource({"service.name": "other", "big": "r" * 300})]
    scopes = [SCOPE, InstrumentationScope("second", attributes={"s": "x" * 100}), None]
    return [
        make_record(f"{i}:" + "b" * rng.randrange(0, 900), {"i": i},
                    resource=rng.choice(resources), scope=rng.choice(scopes))
        for i in range(count)
    ]


def _bodies(encoded: Encoded) -> list[str]:
    return [r.body.string_value for r in encoded.records()]


@pytest.mark.parametrize("max_request_bytes", [1_500, 3_000, 10_000, 100_000])
def test_requests_are_cut_below_the_byte_limit_without_losing_records(
    max_request_bytes: int,
) -> None:
    """Every request fits max_request_bytes; every record arrives, in group order."""
    records = _varied_records(200)
    whole = encode(records)
    cut = encode(records, max_request_bytes=max_request_bytes)
    assert all(len(r.data) <= max_request_bytes for r in cut.requests)
    assert sorted(_bodies(cut)) == sorted(_bodies(whole))
    assert [r.records for r in cut.requests] == [count_of(r) for r in cut.requests]
    assert sum(r.records for r in cut.requests) == 200
    assert not cut.dropped
    if max_request_bytes < len(whole.requests[0].data):
        assert len(cut.requests) > 1


def count_of(request: otlp.OtlpRequest) -> int:
    return otlp.count_records(request.data)


def test_cut_requests_keep_group_order_and_repeat_resource_and_scope() -> None:
    """Concatenated, the cut requests hold the same groups in the same order as one request."""
    records = _varied_records(120)
    whole = encode(records).messages()[0]
    cut = encode(records, max_request_bytes=2_000)

    def flatten(messages: list[ExportLogsServiceRequest]) -> list[tuple[bytes, bytes, str]]:
        return [(rl.resource.SerializeToString(), sl.scope.SerializeToString(),
                 lr.body.string_value)
                for m in messages for rl in m.resource_logs for sl in rl.scope_logs
                for lr in sl.log_records]

    assert flatten(cut.messages()) == flatten([whole])


def test_requests_respect_max_records() -> None:
    """No request holds more than max_records records."""
    cut = encode(_varied_records(50), max_records=7)
    assert [r.records for r in cut.requests] == [7] * 7 + [1]


def test_single_record_over_the_limit_is_dropped_and_counted() -> None:
    """A record that cannot fit even alone is dropped; its neighbours are sent."""
    records = [make_record("small"), make_record("x" * 5_000), make_record("small too")]
    cut = encode(records, max_request_bytes=1_000)
    assert _bodies(cut) == ["small", "small too"]
    assert cut.dropped == {"record_too_large": 1}


def test_a_record_that_exactly_fills_a_request_is_kept() -> None:
    """The limit is inclusive: a request of exactly max_request_bytes is allowed."""
    record = make_record("y" * 3_000)
    size = len(encode([record]).requests[0].data)
    assert len(encode([record], max_request_bytes=size).requests[0].data) == size
    assert encode([record], max_request_bytes=size - 1).dropped == {"record_too_large": 1}


def test_no_records_make_no_requests() -> None:
    """An empty batch gives no request at all."""
    assert encode([]).requests == []


# -- split_request and count_records -------------------------------------------------------------


def _request(records: Sequence[ReadableLogRecord]) -> bytes:
    (request,) = encode(records).requests
    return request.data


@pytest.mark.parametrize("count", [2, 3, 10, 51])
def test_split_halves_are_valid_requests_holding_every_record_in_order(count: int) -> None:
    """Both halves decode, hold about half each, and concatenate to the original records."""
    data = _request(_varied_records(count, seed=count))
    halves = otlp.split_request(data)
    assert halves is not None
    first, second = halves
    assert otlp.count_records(first) == count // 2
    assert otlp.count_records(first) + otlp.count_records(second) == count
    original = ExportLogsServiceRequest.FromString(data)

    def flat(message: ExportLogsServiceRequest) -> list[tuple[str, str, bytes]]:
        return [(rl.schema_url, sl.scope.name, lr.SerializeToString())
                for rl in message.resource_logs for sl in rl.scope_logs
                for lr in sl.log_records]

    parts = [ExportLogsServiceRequest.FromString(h) for h in halves]
    assert flat(parts[0]) + flat(parts[1]) == flat(original)


def test_split_inside_one_scope_repeats_resource_scope_and_schema_urls() -> None:
    """A ScopeLogs cut in two keeps its resource, scope and schema URLs in both halves."""
    resource = Resource({"service.name": "s"}, schema_url="https://r")
    scope = InstrumentationScope("sc", "2", schema_url="https://s", attributes={"a": 1})
    data = _request([make_record(str(i), resource=resource, scope=scope) for i in range(4)])
    halves = otlp.split_request(data)
    assert halves is not None
    for half in halves:
        (rl,) = ExportLogsServiceRequest.FromString(half).resource_logs
        (sl,) = rl.scope_logs
        assert rl.schema_url == "https://r"
        assert rl.resource.attributes[0].key == "service.name"
        assert (sl.schema_url, sl.scope.name, sl.scope.version) == ("https://s", "sc", "2")
        assert len(sl.log_records) == 2


def test_split_at_a_resource_boundary_does_not_make_empty_groups() -> None:
    """When the halfway point falls between resources, no half gets an empty ResourceLogs."""
    other = Resource({"service.name": "other"})
    data = _request([make_record("a"), make_record("b"), make_record("c", resource=other),
                     make_record("d", resource=other)])
    halves = otlp.split_request(data)
    assert halves is not None
    for half in halves:
        (rl,) = ExportLogsServiceRequest.FromString(half).resource_logs
        (sl,) = rl.scope_logs
        assert len(sl.log_records) == 2


@pytest.mark.parametrize("data", [b"", b"\x0a\x02\x0a\x00", b"\xff\xff"])
def test_split_returns_none_below_two_records_or_on_garbage(data: bytes) -> None:
    """Nothing to split (0 or 1 records) or bytes that are not protobuf give None."""
    assert otlp.split_request(data) is None


def test_split_of_a_single_record_request_is_none() -> None:
    """A request holding one record cannot be split."""
    assert otlp.split_request(_request([make_record()])) is None


def test_count_records_matches_the_decoded_message() -> None:
    """count_records agrees with a full decode."""
    data = _request(_varied_records(33))
    message = ExportLogsServiceRequest.FromString(data)
    assert otlp.count_records(data) == sum(
        len(sl.log_records) for rl in message.resource_logs for sl in rl.scope_logs) == 33
    assert otlp.count_records(b"") == 0


@pytest.mark.parametrize("data", [b"\x0a\x05\x12", b"\x0b", b"\x0a\xff\xff\xff\xff\xff\xff\xff"
                                  b"\xff\xff\xff\x01"])
def test_count_records_raises_value_error_on_malformed_bytes(data: bytes) -> None:
    """Malformed input is a ValueError, never an IndexError or a wrong count."""
    with pytest.raises(ValueError, match=r"."):
        otlp.count_records(data)


# -- parse_partial_success -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (ExportLogsServiceResponse(partial_success=ExportLogsPartialSuccess(
            rejected_log_records=12, error_message="12 records too old")),
         (12, "12 records too old")),
        (ExportLogsServiceResponse(partial_success=ExportLogsPartialSuccess(
            error_message="warning only")), (0, "warning only")),
        (ExportLogsServiceResponse(partial_success=ExportLogsPartialSuccess(
            rejected_log_records=3)), (3, "")),
        (ExportLogsServiceResponse(), (0, "")),
        (ExportLogsServiceResponse(partial_success=ExportLogsPartialSuccess(
            rejected_log_records=-4)), (0, "")),
    ],
)
def test_parse_partial_success_reads_real_responses(
    response: ExportLogsServiceResponse, expected: tuple[int, str]
) -> None:
    """A serialized ExportLogsServiceResponse gives (rejected_log_records, error_message)."""
    assert otlp.parse_partial_success(response.SerializeToString()) == expected


@pytest.mark.parametrize(
    "body",
    [b"", b"<html>502 Bad Gateway</html>", b'{"error":{"code":400}}', b"\x0a\xff", b"\x80",
     b"\x0a\x03\x12\x05ab"],
)
def test_parse_partial_success_on_empty_or_garbage_is_zero(body: bytes) -> None:
    """An empty, JSON, HTML or truncated body gives (0, "")."""
    assert otlp.parse_partial_success(body) == (0, "")


def test_parse_partial_success_never_raises_on_random_bytes() -> None:
    """Random bodies never raise and always give a non-negative count and a str."""
    rng = random.Random(3)
    for _ in range(2_000):
        body = rng.randbytes(rng.randrange(0, 40))
        rejected, message = otlp.parse_partial_success(body)
        assert rejected >= 0
        assert isinstance(message, str)


def test_parse_partial_success_replaces_invalid_utf8_in_the_message() -> None:
    """A message that is not UTF-8 is decoded with replacement characters."""
    body = b"\x0a\x04\x12\x02\xff\xfe"
    assert otlp.parse_partial_success(body) == (0, "\ufffd\ufffd")
