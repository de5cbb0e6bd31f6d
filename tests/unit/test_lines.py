"""Pure line parsing for `dt-exporter send`: formats, JSON array streaming, bad input."""

from __future__ import annotations

import gzip
import io
from typing import Any, Final

import orjson
import pytest

from dt_exporter.lines import Chunk, InputFormat, parse_timestamp, read_chunks, timestamp_ms


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
