"""payload: JSON arrays within byte and record limits, gzip, and halving after a 413."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from typing import Any

import pytest

from dt_exporter._payload import compress, count_json_array, decompress, json_arrays
from dt_exporter._routes import split_json_array


def fixed(i: int) -> dict[str, str]:
    """An object whose compact JSON is exactly 13 bytes: {"i":"00007"}."""
    return {"i": f"{i:05d}"}


FIXED_BYTES = len(json.dumps(fixed(0), separators=(",", ":")).encode())


def pack(
    objects: list[Any], max_bytes: int, max_records: int
) -> tuple[list[tuple[bytes, int]], Counter[str], Counter[str]]:
    truncations: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    arrays = json_arrays(
        objects,
        max_bytes=max_bytes,
        max_records=max_records,
        truncations=truncations,
        dropped=dropped,
    )
    return arrays, truncations, dropped


def test_fixture_object_size() -> None:
    """The packing tables below assume 13-byte objects."""
    assert FIXED_BYTES == 13


@pytest.mark.parametrize(
    ("count", "max_bytes", "max_records", "sizes"),
    [
        (0, 1000, 10, []),
        (1, 1000, 10, [1]),
        (10, 10_000, 50_000, [10]),
        (10, 10_000, 4, [4, 4, 2]),
        (10, 10_000, 1, [1] * 10),
        # three objects and two commas inside the brackets: 2 + 3 * 13 + 2 = 43 bytes exactly
        (7, 43, 100, [3, 3, 1]),
        (7, 42, 100, [2, 2, 2, 1]),
        (6, 2 + FIXED_BYTES, 100, [1] * 6),
        (9, 43, 2, [2, 2, 2, 2, 1]),
    ],
)
def test_arrays_respect_byte_and_record_limits(
    count: int, max_bytes: int, max_records: int, sizes: list[int]
) -> None:
    """Objects are packed greedily, in order, into arrays within max_bytes and max_records."""
    objects = [fixed(i) for i in range(count)]
    arrays, _, dropped = pack(objects, max_bytes, max_records)
    assert [n for _, n in arrays] == sizes
    decoded: list[Any] = []
    for data, n in arrays:
        assert len(data) <= max_bytes
        items = json.loads(data)
        assert len(items) == n <= max_records
        decoded.extend(items)
    assert decoded == objects
    assert not dropped


def test_large_batch_keeps_every_object_in_order() -> None:
    """A batch over both limits is split without losing or reordering any object."""
    objects = [{"seq": i, "content": "é" * (i % 97)} for i in range(2_000)]
    arrays, _, dropped = pack(objects, 20_000, 150)
    decoded = [item for data, _ in arrays for item in json.loads(data)]
    assert decoded == objects
    assert sum(n for _, n in arrays) == len(objects)
    assert all(len(data) <= 20_000 and n <= 150 for data, n in arrays)
    assert not dropped


@pytest.mark.parametrize("position", [0, 2, 4])
def test_single_oversized_object_is_dropped_and_counted(position: int) -> None:
    """An object larger than max_bytes on its own is dropped as record_too_large; the rest go."""
    objects: list[Any] = [fixed(i) for i in range(4)]
    objects.insert(position, {"content": "x" * 500})
    arrays, _, dropped = pack(objects, 100, 100)
    decoded = [item for data, _ in arrays for item in json.loads(data)]
    assert decoded == [fixed(i) for i in range(4)]
    assert dropped == Counter({"record_too_large": 1})


def test_object_that_exactly_fills_a_request_is_kept() -> None:
    """An object whose bracketed size equals max_bytes still fits."""
    arrays, _, dropped = pack([fixed(1), fixed(2)], 2 + FIXED_BYTES, 10)
    assert [n for _, n in arrays] == [1, 1]
    assert not dropped


def test_lone_surrogates_are_scrubbed_into_valid_utf8() -> None:
    """A lone surrogate anywhere in an object becomes U+FFFD and the body is valid UTF-8 JSON."""
    arrays, truncations, _ = pack([{"k\ud800": "v\udfff", "list": ["\udc80"]}], 1000, 10)
    ((data, _),) = arrays
    assert json.loads(data.decode("utf-8")) == [{"k\ufffd": "v\ufffd", "list": ["\ufffd"]}]
    assert truncations["invalid_unicode"] >= 1


@pytest.mark.parametrize("max_bytes", [10_000, 30])
def test_invalid_unicode_count_does_not_depend_on_packing(max_bytes: int) -> None:
    """Scrubbed objects are counted the same whether the batch fits one array or several."""
    objects = [{"a": "\ud800"}, {"a": "ok"}, {"a": "\udfff"}]
    arrays, truncations, _ = pack(objects, max_bytes, 100)
    assert sum(n for _, n in arrays) == 3
    one_array = pack(objects, 10**6, 100)[1]
    assert truncations["invalid_unicode"] == one_array["invalid_unicode"]
    assert truncations["invalid_unicode"] <= 2


# -- gzip ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [1, 6, 9])
@pytest.mark.parametrize(
    "data", [b"", b"[]", json.dumps([{"content": "é" * 1000}] * 50).encode(), bytes(range(256))]
)
def test_gzip_round_trip(data: bytes, level: int) -> None:
    """compress gives a real gzip stream (magic 1f 8b) that the stdlib and decompress both read."""
    packed = compress(data, "gzip", level)
    assert packed[:2] == b"\x1f\x8b"
    assert gzip.decompress(packed) == data
    assert decompress(packed, "gzip") == data


def test_decompress_reads_stdlib_gzip() -> None:
    """decompress accepts a gzip stream written by another producer."""
    data = b'[{"content":"hello"}]'
    assert decompress(gzip.compress(data), "gzip") == data


def test_identity_encoding_passes_bytes_through() -> None:
    """With identity encoding the bytes go out untouched."""
    data = b'[{"content":"hello"}]'
    assert compress(data, "identity", 9) == data
    assert decompress(data, "identity") == data


def test_gzip_actually_compresses_repetitive_json() -> None:
    """Repetitive log JSON shrinks under gzip."""
    data = json.dumps([{"content": "GET /health 200"}] * 1000).encode()
    assert len(compress(data, "gzip", 1)) < len(data) // 10


# -- split and count -----------------------------------------------------------------------------


@pytest.mark.parametrize("count", [2, 3, 10, 101])
def test_split_halves_keep_every_object_in_order(count: int) -> None:
    """Halving a body gives two arrays that together hold every object, in order."""
    objects = [{"seq": i, "content": f"line {i} é"} for i in range(count)]
    data = json.dumps(objects).encode()
    halves = split_json_array(data)
    assert halves is not None
    first, second = (json.loads(half) for half, _ in halves)
    assert [records for _, records in halves] == [len(first), len(second)]
    assert first + second == objects
    assert len(first) == count // 2
    assert abs(len(first) - len(second)) <= 1


@pytest.mark.parametrize("data", [b"[]", b'[{"a":1}]', b'{"a":1}', b"not json", b"", b"[1,"])
def test_split_refuses_what_cannot_be_halved(data: bytes) -> None:
    """Fewer than two objects, a non-array or invalid JSON cannot be split: None."""
    assert split_json_array(data) is None


@pytest.mark.parametrize(
    ("data", "count"),
    [(b"[]", 0), (b'[{"a":1}]', 1), (b"[1,2,3]", 3), (b'{"a":1}', 1), (b"garbage", 0), (b"", 0)],
)
def test_count_json_array(data: bytes, count: int) -> None:
    """count_json_array counts an array's elements; a lone object is one, invalid JSON none."""
    assert count_json_array(data) == count
