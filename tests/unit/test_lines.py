"""Pure line parsing for `dt-exporter send`: formats, JSON array streaming, bad input."""

from __future__ import annotations

import gzip
import io
from collections import Counter
from dataclasses import replace
from typing import Any, Final

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dt_exporter._text import float_to_json
from dt_exporter._timestamps import parse_timestamp_ns
from dt_exporter.limits import GRAIL
from dt_exporter.lines import (
    Chunk,
    InputFormat,
    parse_lines,
    parse_timestamp,
    read_chunks,
    timestamp_ms,
)
from dt_exporter.mapping import RESERVED_ATTRIBUTES, SPECIAL_KEYS, JsonObject, RecordMapper


class Trickle(io.RawIOBase):
    """A source that hands out at most `step` bytes per read, like a slow pipe."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        take = self._step if size < 0 else min(size, self._step)
        part = self._data[self._pos:self._pos + take]
        self._pos += len(part)
        return part


def read_all(data: bytes, fmt: InputFormat = "auto", **kwargs: Any) -> Chunk:
    """Every chunk's items and counts, merged."""
    merged = Chunk()
    for chunk in read_chunks(io.BytesIO(data), fmt, **kwargs):
        merged.items.extend(chunk.items)
        merged.invalid += chunk.invalid
        merged.error = merged.error or chunk.error
    return merged


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"content": "hi", "n": 1}', {"content": "hi", "n": 1}),
        (b'  {"a": 1}', {"a": 1}),
        (b"plain text", "plain text"),
        (b'{"broken": ', '{"broken": '),
        (b"[1, 2, 3]", "[1, 2, 3]"),
        (b'"a json string"', '"a json string"'),
        (b"42", "42"),
        (b'{"a": 1} trailing', '{"a": 1} trailing'),
        (b"{", "{"),
        (b'{"a": 1}\r', {"a": 1}),
    ],
)
def test_auto_detects_each_line(line: bytes, expected: object) -> None:
    """auto: a line that parses as a JSON object is an object, anything else is text."""
    assert read_all(b"first line\n" + line + b"\n").items == ["first line", expected]


def test_jsonl_counts_lines_that_are_no_object_as_invalid() -> None:
    """jsonl: text and non-object JSON lines are counted as invalid, not sent as text."""
    chunk = read_all(b'{"a": 1}\nnot json\n[1]\n{"b": 2}\n', "jsonl")
    assert chunk.items == [{"a": 1}, {"b": 2}]
    assert chunk.invalid == 2


def test_text_keeps_json_looking_lines_as_text() -> None:
    """text: every line is content, even one that is a JSON object."""
    assert read_all(b'{"a": 1}\nplain\n', "text").items == ['{"a": 1}', "plain"]


def test_blank_lines_and_crlf_are_not_records() -> None:
    """Empty and whitespace-only lines are skipped; CRLF line ends lose their CR."""
    chunk = read_all(b"one\r\n\r\n   \n\t\ntwo\r\n\n")
    assert chunk.items == ["one", "two"]
    assert chunk.invalid == 0


def test_last_line_without_newline_is_read() -> None:
    """A file that does not end with a newline still yields its last line."""
    assert read_all(b"one\ntwo").items == ["one", "two"]


def test_invalid_utf8_is_replaced_never_raised() -> None:
    """Bytes that are not UTF-8 become U+FFFD, in text and in would-be JSON lines."""
    chunk = read_all(b"caf\xe9 \xff\xfe\n{\"k\": \"\xc3\"}\n")
    assert chunk.items[0] == "caf\ufffd \ufffd\ufffd"
    assert chunk.items[1] == {"k": "\ufffd"}


def test_utf8_split_across_reads_survives() -> None:
    """A multi-byte character cut by a read boundary is decoded whole."""
    data = ("é" * 50 + "\n").encode() * 20
    chunks = list(read_chunks(Trickle(data, 7), chunk_bytes=7))
    assert [item for c in chunks for item in c.items] == ["é" * 50] * 20


def test_byte_order_mark_is_dropped() -> None:
    """A UTF-8 BOM at the start of a file is not part of the first record."""
    assert read_all(b'\xef\xbb\xbf{"a": 1}\n').items == [{"a": 1}]


def test_chunks_bound_records_and_bytes() -> None:
    """Chunks hold at most chunk_records records, and input is read in chunk_bytes reads."""
    data = b"".join(b"line %d\n" % i for i in range(1000))
    chunks = list(read_chunks(io.BytesIO(data), chunk_bytes=512, chunk_records=50))
    assert all(len(c.items) <= 50 for c in chunks)
    assert [item for c in chunks for item in c.items] == [f"line {i}" for i in range(1000)]
    assert sum(c.input_bytes for c in chunks) == len(data)


def test_overlong_line_is_cut_not_buffered_forever() -> None:
    """A line with no newline within max_line_bytes is cut there, so memory stays bounded."""
    chunk = read_all(b"x" * 2500 + b"\nend\n", chunk_bytes=100, max_line_bytes=1000)
    assert [len(item) for item in chunk.items] == [1000, 1000, 500, 3]


def test_json_array_is_streamed_element_by_element() -> None:
    """A JSON array file arrives in many chunks, each element intact."""
    objects = [{"id": i, "content": f"record {i} " + "ü" * (i % 7)} for i in range(500)]
    data = orjson.dumps(objects, option=orjson.OPT_INDENT_2)
    chunks = list(read_chunks(Trickle(data, 97), chunk_bytes=97, chunk_records=40))
    assert len(chunks) > 10
    assert all(len(c.items) <= 40 for c in chunks)
    assert [item for c in chunks for item in c.items] == objects
    assert not any(c.error for c in chunks)


def test_json_array_numbers_cut_by_a_read_are_whole() -> None:
    """A number at the end of one read continues in the next; strings are text records."""
    chunk = read_all(b'[  "text record" ,12345678, {"a": [1, 2]}, null]', "json", chunk_bytes=3)
    assert chunk.items == ["text record", {"a": [1, 2]}]
    assert chunk.invalid == 2  # the number and null are no records


def test_empty_json_array_has_no_records() -> None:
    """`[]` (with whitespace, arriving a few bytes per read) is an array with nothing in it."""
    chunk = Chunk()
    for part in read_chunks(Trickle(b"  [ \n ]  \n", 2), chunk_bytes=2):
        chunk.items.extend(part.items)
        chunk.invalid += part.invalid
    assert chunk.items == []
    assert chunk.invalid == 0


def test_bracketed_text_log_is_not_mistaken_for_an_array() -> None:
    """auto: `[2024-05-01 ...] INFO` lines stay text; only `[{` or `[]` starts an array."""
    chunk = read_all(b"[2024-05-01 12:00:00] INFO started\n[2024-05-01 12:00:01] INFO ok\n")
    assert chunk.items == ["[2024-05-01 12:00:00] INFO started", "[2024-05-01 12:00:01] INFO ok"]


def test_broken_json_array_reports_an_error() -> None:
    """Invalid JSON inside an array stops the file with an error and counts the element."""
    chunk = read_all(b'[{"a": 1}, {"b": oops}, {"c": 3}]', "json")
    assert chunk.items == [{"a": 1}]
    assert chunk.invalid == 1
    assert chunk.error is not None and "invalid JSON" in chunk.error


def test_truncated_json_array_reports_an_error() -> None:
    """An array whose closing bracket never comes is reported, its elements kept."""
    chunk = read_all(b'[{"a": 1}, {"b": 2}', "json")
    assert chunk.items == [{"a": 1}, {"b": 2}]
    assert chunk.error is not None


def test_gzip_stream_reads_like_the_plain_file() -> None:
    """A gzip-compressed input yields the same records as the uncompressed one."""
    data = b"".join(b'{"id": %d}\ntext %d\n' % (i, i) for i in range(300))
    with gzip.GzipFile(fileobj=io.BytesIO(gzip.compress(data)), mode="rb") as unzipped:
        items = [item for c in read_chunks(unzipped, chunk_bytes=256) for item in c.items]
    assert items == read_all(data).items


MAY_1: Final = 1_714_521_600_000  # 2024-05-01T00:00:00Z in ms


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_714_521_600, MAY_1),  # seconds
        (1_714_521_600.25, MAY_1 + 250),  # fractional seconds
        (1_714_521_600.123, MAY_1 + 123),  # read as printed, not as its binary 122.99999...
        (1_714_521_600_000, MAY_1),  # milliseconds
        (1_714_521_600_000_000, MAY_1),  # microseconds
        (1_714_521_600_000_000_000, MAY_1),  # nanoseconds
        (100_000_000_000, 100_000_000_000_000),  # the top of seconds ...
        (100_000_000_001, 100_000_000_001),  # ... and the bottom of milliseconds
        (100_000_000_000_000, 100_000_000_000_000),  # the top of milliseconds
        (100_000_000_000_001, 100_000_000_000),  # the bottom of microseconds (floored)
        (9_999_999_999_999_999, 9_999_999_999_999),  # the top of microseconds
        (10_000_000_000_000_000, 10_000_000_000),  # the bottom of nanoseconds
        (2**63 - 1, (2**63 - 1) // 1_000_000),  # the top of nanoseconds (int64)
        (2**63, None),  # beyond int64 nanoseconds
        (-86_400, -86_400_000),  # before 1970: seconds
        (-100_000_000_001, None),
        ("1714521600000", MAY_1),
        ("1714521600", MAY_1),
        ("1714521600.5", MAY_1 + 500),
        ("1714521600000000000", MAY_1),
        (" 1714521600 ", MAY_1),
        ("1.7145216e9", None),  # no exponent in text
        ("1_714_521_600", None),  # float() reads this; Dynatrace does not
        ("+1714521600", None),
        ("2024-05-01T00:00:00Z", MAY_1),
        ("2024-05-01t00:00:00z", MAY_1),
        ("2024-05-01T02:00:00.5+02:00", MAY_1 + 500),
        ("2024-05-01T02:00:00.5+0200", MAY_1 + 500),
        ("2024-05-01T02:00:00+02", MAY_1),
        ("2024-04-30T22:00:00-02:00", MAY_1),
        ("2024-05-01 00:00:00 +0000", MAY_1),
        ("2024-05-01 00:00:00,250", MAY_1 + 250),
        ("2024-04-30T23:59:49.5Z", MAY_1 - 10_500),  # the line: 3.10 missed it
        ("2024-05-01T00:00:00.1234567891234Z", MAY_1 + 123),  # any length; cut, not rounded
        ("2024-05-01T00:00:00.9999999Z", MAY_1 + 999),
        ("2024-05-01T00:00", MAY_1),
        ("2024-05-01", MAY_1),  # a date alone: its midnight UTC
        ("2024-05-01T00:00:00", MAY_1),  # no zone: UTC
        ("2024-02-30T00:00:00Z", None),
        ("2024-05-01T24:00:00Z", None),
        ("2024-05-01T23:59:60Z", None),
        ("2024-05-01T00:00:00+24:00", None),
        ("2024-05-01T00:00:00+02:60", None),
        ("2024W181", None),  # fromisoformat reads these from 3.11 on; no log writes them
        ("2024-05-01T00", None),
        ("2024-05-01Z", None),
        ("yesterday", None),
        ("", None),
        (True, None),
        (float("nan"), None),
        (float("inf"), None),
        (None, None),
        ([1_714_521_600], None),
    ],
)
def test_parse_timestamp(value: object, expected: int | None) -> None:
    """Timestamps read the same on every Python: ISO 8601, epoch s/ms/µs/ns told apart by size."""
    assert parse_timestamp(value) == expected


def test_timestamp_key_priority_and_case() -> None:
    """The first key in Dynatrace's list wins, matched case-insensitively."""
    assert timestamp_ms({"time": 1_714_521_600, "@Timestamp": 1_714_521_700}) == 1_714_521_700_000
    assert timestamp_ms({"ts": "2024-05-01T00:00:00Z"}) == 1_714_521_600_000
    assert timestamp_ms({"content": "no time"}) is None


@pytest.mark.parametrize("fmt", ["auto", "jsonl"])
def test_lines_starting_with_a_brace_follow_the_format(fmt: InputFormat) -> None:
    """A line that starts with `{` but is no JSON object is text (auto) or invalid (jsonl),
    like any other line that is no object."""
    chunk = parse_lines(['{"a": 1}', "{not json", '{"b": 2} {"c": 3}', " {\"d\": 4}"], fmt)
    if fmt == "auto":
        assert chunk.items == [{"a": 1}, "{not json", '{"b": 2} {"c": 3}', {"d": 4}]
    else:
        assert (chunk.items, chunk.invalid) == ([{"a": 1}, {"d": 4}], 2)


_ISO_TAIL = st.text(alphabet="0123456789.,:+-Zzt T\t", max_size=14)
_ISO_HEADS = st.builds(
    "{:04d}-{:02d}-{:02d}{}{:02d}:{:02d}:{:02d}".format,
    st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.sampled_from("Tt x"),
    st.integers(0, 25), st.integers(0, 61), st.integers(0, 61),
)


@settings(max_examples=500, deadline=None)
@given(head=_ISO_HEADS, tail=_ISO_TAIL, blank=st.sampled_from(["", " ", "\t"]))
def test_memoised_iso_timestamps_read_as_the_parser_reads_them(
    head: str, tail: str, blank: str
) -> None:
    """The memoised second + fraction-and-zone path gives exactly the shared parser's floored
    ms (or None) for any `YYYY-MM-DD?hh:mm:ss...`-shaped text, valid or not, cold and warm."""
    for value in (head + tail, blank + head + tail, head + tail + blank):
        ns = parse_timestamp_ns(value)
        expected = None if ns is None else ns // 1_000_000
        assert parse_timestamp(value) == expected  # the memos may be cold
        assert parse_timestamp(value) == expected  # now they are warm


@settings(max_examples=500, deadline=None)
@given(date=st.sampled_from(["2024-05-01T", "2024-05-01 ", "1999-12-31t", " 2024-05-01T"]),
       rest=st.text(alphabet="0123456789:.,+-Zz \t", max_size=24))
def test_any_text_after_a_date_reads_as_the_parser_reads_it(date: str, rest: str) -> None:
    """Whatever follows a date (`12:00+01:30`, whose first 19 characters also look like a
    second, a bare `12:00Z`, garbage), the memo path agrees with the shared parser."""
    value = date + rest
    ns = parse_timestamp_ns(value)
    assert parse_timestamp(value) == (None if ns is None else ns // 1_000_000)
    assert parse_timestamp(value) == (None if ns is None else ns // 1_000_000)


def test_memoised_timestamps_of_a_log_file() -> None:
    """A second, its fractions and zones, as log writers print them, through the memos."""
    moment = 1_714_521_600_000  # 2024-05-01T00:00:00Z
    for fraction, zone, offset_ms in [(".5", "Z", 0), (".123456789", "+02:00", -7_200_000),
                                      (",250", "", 0), (".999", " -0130", 5_400_000)]:
        value = "2024-05-01T00:00:00" + fraction + zone
        expected = moment + int(fraction[1:4].ljust(3, "0")) + offset_ms
        assert [parse_timestamp(value) for _ in range(3)] == [expected] * 3
    assert parse_timestamp("2024-05-01T00:00:00" + "5" * 100) is None  # long tails: no memo
    # Shapes whose first 19 characters are no `...hh:mm:ss`: read by the parser itself.
    assert parse_timestamp("2024-05-01T01:30+01:30") == moment
    assert parse_timestamp("2024-05-01T00:00+00:00:00") is None


def _map_object_reference(mapper: RecordMapper, source: dict[str, Any]) -> JsonObject:
    """`RecordMapper.map_object` as it was before its one-pass rewrite (the oracle)."""
    special = {k: v for k, v in source.items() if k in SPECIAL_KEYS}
    out: JsonObject = {}
    mapper._add_attributes(out, {k: v for k, v in source.items() if k not in special}
                           if special else source)
    for key, value in special.items():
        if key == "content":
            out[key] = mapper._content(value)
        elif key == "timestamp" and type(value) in (int, float):
            out[key] = float_to_json(value) if type(value) is float else value
        else:
            out[key] = mapper._value(value, ())
    return out


_SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
            | st.text(alphabet="x", min_size=100, max_size=300))
_JSON_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)
_KEYS = st.sampled_from([*sorted(SPECIAL_KEYS), "level", "a.b", "x" * 120, ""]) | st.text(
    max_size=12)


@settings(max_examples=300, deadline=None)
@given(source=st.dictionaries(_KEYS, _JSON_VALUES, max_size=12))
def test_map_object_matches_the_two_pass_mapping(source: dict[str, Any]) -> None:
    """A JSON line maps to the same object, key order and truncation counts included, as the
    two-pass mapping it replaced (small limits, so cuts and the attribute budget are hit)."""
    small = replace(GRAIL, max_value_bytes=64, max_key_bytes=40, max_content_bytes=80,
                    max_attributes=RESERVED_ATTRIBUTES + 6, max_values_per_attribute=3,
                    max_nesting_depth=2)
    fast_cuts: Counter[str] = Counter()
    slow_cuts: Counter[str] = Counter()
    fast = RecordMapper(small, fast_cuts).map_object(source)
    slow = _map_object_reference(RecordMapper(small, slow_cuts), source)
    assert list(fast.items()) == list(slow.items())
    assert fast_cuts == slow_cuts
