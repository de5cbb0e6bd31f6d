"""Properties of RecordMapper + json_arrays: any value maps to valid JSON within the limits."""

from __future__ import annotations

import json
import operator
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from dt_exporter import _payload as payload
from dt_exporter.limits import CLASSIC, GRAIL, LimitProfile
from dt_exporter.mapping import RecordMapper

PROFILES = pytest.mark.parametrize("profile", [GRAIL, CLASSIC], ids=["grail", "classic"])
SPECIAL_FIELDS = frozenset({"content", "timestamp", "loglevel"})
SETTINGS = settings(max_examples=150, deadline=None)

SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udc80", "\udfff"])
ODD_CHARS = st.sampled_from(["\x00", "\x01", "\x1f", "\x7f", '"', "\\", "é", "€", "😀", "\ufffd"])
CHARS = st.one_of(st.characters(codec=None), SURROGATES, ODD_CHARS)
SHORT_TEXT = st.text(CHARS, max_size=20)
#: Cheap long strings: a short pattern repeated past every profile's value limit.
LONG_TEXT = st.builds(operator.mul, st.text(CHARS, min_size=1, max_size=4), st.integers(0, 12_000))
TEXT = st.one_of(SHORT_TEXT, LONG_TEXT)
INTS = st.one_of(
    st.integers(),
    st.integers(min_value=2**64 - 2, max_value=2**64 + 2),
    st.integers(min_value=-(2**63) - 2, max_value=-(2**63) + 2),
    st.integers(min_value=2**100, max_value=2**1000),
    st.integers(min_value=-(2**1000), max_value=-(2**100)),
)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
HASHABLE = st.one_of(st.none(), st.booleans(), INTS, FLOATS, SHORT_TEXT, st.binary(max_size=16))
SCALARS = st.one_of(st.none(), st.booleans(), INTS, FLOATS, TEXT, st.binary(max_size=64))
KEYS = st.one_of(
    SHORT_TEXT,
    st.builds(operator.mul, st.text(CHARS, min_size=1, max_size=3), st.integers(10, 60)),
    st.sampled_from(["content", "timestamp", "loglevel", "trace_id", "span_id", "event.name"]),
)


def chain(depth: int, leaf: Any) -> Any:
    for level in range(depth, 0, -1):
        leaf = {f"d{level}": leaf}
    return leaf


def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=8),
        st.lists(HASHABLE, min_size=28, max_size=45),
        st.lists(children, max_size=5).map(tuple),
        st.frozensets(HASHABLE, max_size=40),
        st.sets(HASHABLE, max_size=5),
        st.dictionaries(KEYS, children, max_size=8),
        st.builds(chain, st.integers(1, 12), children),
    )


VALUES = st.recursive(SCALARS, extend, max_leaves=40)
#: Many small attributes, past both profiles' attribute caps.
WIDE = st.integers(0, 700).map(lambda n: {f"wide.{i}": i for i in range(n)})
ATTRIBUTES = st.one_of(st.dictionaries(KEYS, VALUES, max_size=12), WIDE)
RESOURCES = st.one_of(st.dictionaries(KEYS, SCALARS, max_size=8), WIDE)
LONG_BODY = st.builds(operator.mul, st.text(CHARS, min_size=1, max_size=4), st.integers(0, 200_000))
BODIES = st.one_of(VALUES, LONG_BODY)


def build(body: Any, attributes: dict[Any, Any], resource: dict[Any, Any]) -> ReadableLogRecord:
    return ReadableLogRecord(
        LogRecord(body=body, attributes=attributes, timestamp=1, observed_timestamp=1),
        resource=Resource(resource),
        instrumentation_scope=InstrumentationScope("prop.scope", "1.0"),
    )


def encode(mapped: dict[str, Any]) -> dict[str, Any]:
    """json_arrays, then a strict UTF-8 decode and the stdlib parser: what Dynatrace would read."""
    arrays = payload.json_arrays(
        [mapped], max_bytes=10**9, max_records=10, truncations=Counter(), dropped=Counter()
    )
    assert [count for _, count in arrays] == [1]
    (obj,) = json.loads(arrays[0][0].decode("utf-8"))
    assert isinstance(obj, dict)
    return obj


def utf8(text: str) -> int:
    return len(text.encode("utf-8"))


def assert_within_limits(obj: dict[str, Any], profile: LimitProfile) -> None:
    attributes = [k for k in obj if k not in SPECIAL_FIELDS]
    assert len(attributes) <= profile.max_attributes
    assert isinstance(obj["content"], str)
    assert utf8(obj["content"]) <= profile.max_content_bytes
    for key in attributes:
        assert utf8(key) <= profile.max_key_bytes, key
        value = obj[key]
        if isinstance(value, list):
            assert len(value) <= profile.max_values_per_attribute
            elements = value
        else:
            elements = [value]
        for element in elements:
            assert element is None or isinstance(element, (str, int, float, bool))
            if isinstance(element, str):
                assert utf8(element) <= profile.max_value_bytes


@PROFILES
@SETTINGS
@given(attributes=ATTRIBUTES, resource=RESOURCES)
def test_any_attributes_map_to_valid_json_within_limits(
    profile: LimitProfile, attributes: dict[Any, Any], resource: dict[Any, Any]
) -> None:
    """Any nested attribute values map without raising to valid UTF-8 JSON inside every limit."""
    mapped = RecordMapper(profile, Counter()).map(build("x", attributes, resource))
    assert_within_limits(encode(mapped), profile)


@PROFILES
@SETTINGS
@given(body=BODIES)
def test_any_body_maps_to_valid_json_content_within_limit(profile: LimitProfile, body: Any) -> None:
    """Any body maps without raising to a content string of at most max_content_bytes."""
    mapped = RecordMapper(profile, Counter()).map(build(body, {}, {}))
    obj = encode(mapped)
    assert_within_limits(obj, profile)


@PROFILES
@SETTINGS
@given(body=BODIES, attributes=ATTRIBUTES)
def test_mapping_is_deterministic(
    profile: LimitProfile, body: Any, attributes: dict[Any, Any]
) -> None:
    """The same record gives byte-identical payloads from two fresh mappers."""
    rec = build(body, attributes, {"service.name": "svc"})
    first = RecordMapper(profile, Counter()).map(rec)
    second = RecordMapper(profile, Counter()).map(rec)
    assert encode(first) == encode(second)


@SETTINGS
@given(text=st.text(CHARS, max_size=200))
def test_strings_round_trip_except_surrogates(text: str) -> None:
    """A short string value arrives unchanged, except lone surrogates which become U+FFFD."""
    mapped = RecordMapper(GRAIL, Counter()).map(build(text, {"k": text}, {}))
    obj = encode(mapped)
    expected = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    assert obj["k"] == expected
    assert obj["content"] == expected
