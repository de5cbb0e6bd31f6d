"""Pure: log input (JSON Lines, a JSON array, or plain text) becomes Dynatrace log objects.

Input comes in chunks of whole lines, so memory stays flat however large the file is. Formats:
- `auto`: per line, a line that parses as a JSON object is that object, anything else is text
  (`{"content": line}`). A file whose first non-space byte is `[` followed by `{` or `]` is read
  as one JSON array instead (a bracketed text log such as `[2024-05-01 ...] INFO` stays text).
- `jsonl`: every line must be a JSON object; other lines are counted as `invalid_json`.
- `json`: a JSON array of objects (streamed element by element), or else JSON Lines.
- `text`: every line is text, even one that looks like JSON.

Bytes that are not UTF-8 become U+FFFD; empty and whitespace-only lines are skipped (they are no
log records); a trailing `\\r` (CRLF files) and a leading byte order mark are removed.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

import orjson

from dt_exporter._timestamps import parse_timestamp_ns

InputFormat = Literal["auto", "jsonl", "json", "text"]
FORMATS: Final[tuple[InputFormat, ...]] = ("auto", "jsonl", "json", "text")

#: A chunk ends after about this many input bytes (a request body of a few MB) ...
CHUNK_BYTES: Final = 2 * 1024 * 1024
#: ... or this many records, whichever comes first.
CHUNK_RECORDS: Final = 20_000
#: A "line" with no newline in this many bytes is cut here: it is far beyond any record limit
#: (content is truncated to 512 kB anyway), and reading on could exhaust memory.
MAX_LINE_BYTES: Final = 16 * 1024 * 1024
_WHITESPACE: Final = b" \t\r\n"

#: The keys Dynatrace reads a record's timestamp from, in priority order (reference 1.4:
#: https://docs.dynatrace.com/docs/analyze-explore-automate/logs/lma-log-ingestion/
#: lma-log-ingestion-via-api/lma-ingest-json-txt-logs). Grail matches them case-insensitively.
TIMESTAMP_KEYS: Final = (
    "timestamp", "@timestamp", "_timestamp", "eventtime", "date", "published_date",
    "syslog.timestamp", "time", "epochsecond", "starttime", "datetime", "ts", "timemillis", "@t",
)
_TIMESTAMP_KEY_SET: Final = frozenset(TIMESTAMP_KEYS)


class ByteSource(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


@dataclass(slots=True)
class Chunk:
    """Records read from one stretch of input: text lines (`str`) and JSON objects (`dict`)."""

    items: list[str | dict[str, Any]] = field(default_factory=list)
    invalid: int = 0  # lines or array elements that are no usable record (`invalid_json`)
    input_bytes: int = 0  # input consumed, for progress reports
    error: str | None = None  # the input could not be read on from here (bad JSON array)

    @property
    def records(self) -> int:
        return len(self.items) + self.invalid


def read_chunks(
    source: ByteSource,
    fmt: InputFormat = "auto",
    *,
    chunk_bytes: int = CHUNK_BYTES,
    chunk_records: int = CHUNK_RECORDS,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[Chunk]:
    """Read `source` to its end in chunks of whole lines (or whole array elements)."""
    head = source.read(chunk_bytes)
    while head and _undecided(head) and len(head) < max_line_bytes:
        more = source.read(chunk_bytes)  # a pipe may hand out a few bytes at a time
        if not more:
            break
        head += more
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8):]
    if fmt != "text" and _looks_like_array(head, strict=fmt == "json"):
        yield from _array_chunks(head, source, chunk_bytes, chunk_records, max_line_bytes)
        return
    yield from _line_chunks(head, source, fmt, chunk_bytes, chunk_records, max_line_bytes)


def _undecided(head: bytes) -> bool:
    """Too little of the input to tell a JSON array from lines: blanks, or `[` and blanks."""
    start = head.lstrip(_WHITESPACE)
    return not start or (start[:1] == b"[" and not start[1:].lstrip(_WHITESPACE))


def _looks_like_array(head: bytes, *, strict: bool) -> bool:
    start = head.lstrip(_WHITESPACE)
    if not start.startswith(b"["):
        return False
    if strict:
        return True
    rest = start[1:].lstrip(_WHITESPACE)
    return rest[:1] in (b"{", b"]")


def _line_chunks(
    head: bytes, source: ByteSource, fmt: InputFormat, chunk_bytes: int, chunk_records: int,
    max_line_bytes: int,
) -> Iterator[Chunk]:
    pending, eof = head, not head
    while True:
        # Top up to a chunk; keep reading while a long line has no end yet.
        while not eof and (len(pending) < chunk_bytes or (
            b"\n" not in pending and len(pending) < max_line_bytes
        )):
            more = source.read(chunk_bytes)
            eof = not more
            pending += more
        cut = pending.rfind(b"\n")
        if cut >= 0:
            block, pending = pending[:cut], pending[cut + 1:]
        elif eof:
            block, pending = pending, b""
        else:  # a line longer than max_line_bytes: cut it (the mapper truncates it anyway)
            block, pending = pending[:max_line_bytes], pending[max_line_bytes:]
        if block:
            lines = _split(block.decode("utf-8", "replace"))
            for start in range(0, len(lines), chunk_records):
                part = lines[start:start + chunk_records]
                chunk = parse_lines(part, fmt)
                consumed = len(block) + 1  # shared out over the parts, exactly
                chunk.input_bytes = (consumed * (start + len(part)) // len(lines)
                                     - consumed * start // len(lines))
                yield chunk
        if eof and not pending:
            return


def _split(text: str) -> list[str]:
    lines = text.split("\n")
    if "\r" in text:
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    return lines


def parse_lines(lines: list[str], fmt: InputFormat) -> Chunk:
    """One record per non-blank line, as `fmt` says."""
    chunk = Chunk()
    items = chunk.items
    if fmt == "text":
        items.extend(line for line in lines if line and not line.isspace())
        return chunk
    strict = fmt != "auto"
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    for line in lines:
        if line[:1] == "{":  # the JSON line as writers write it: no blank test, no lstrip
            try:
                parsed = loads(line)
            except decode_error:
                parsed = None
            if type(parsed) is dict:
                items.append(parsed)
            elif strict:
                chunk.invalid += 1
            else:
                items.append(line)
            continue
        if not line or line.isspace():
            continue
        stripped = line.lstrip()
        if stripped[0] == "{":
            try:
                parsed = loads(line)
            except decode_error:
                parsed = None
            if type(parsed) is dict:
                items.append(parsed)
                continue
        if strict:
            chunk.invalid += 1
        else:
            items.append(line)
    return chunk


def _array_chunks(
    head: bytes, source: ByteSource, chunk_bytes: int, chunk_records: int, max_element_chars: int
) -> Iterator[Chunk]:
    """Stream one JSON array element by element, never holding more than a chunk and one
    element of it."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    scanner = json.JSONDecoder()
    buffer = decoder.decode(head)
    eof = not head
    pos = buffer.index("[") + 1
    chunk = Chunk(input_bytes=len(head))
    need_comma = False

    def fill() -> bool:
        nonlocal buffer, pos, eof
        if eof:
            return False
        data = source.read(chunk_bytes)
        eof = not data
        buffer = buffer[pos:] + decoder.decode(data, final=eof)
        pos = 0
        chunk.input_bytes += len(data)
        return True

    while True:
        while True:  # skip whitespace (and one comma between elements)
            while pos < len(buffer) and buffer[pos] in " \t\r\n":
                pos += 1
            if pos < len(buffer) or not fill():
                break
        if pos >= len(buffer):
            chunk.error = "the JSON array ends before its closing ]"
            break
        char = buffer[pos]
        if char == "]":
            break
        if need_comma:
            if char != ",":
                chunk.error = f"expected , or ] in the JSON array, found {char!r}"
                break
            pos += 1
            need_comma = False
            continue
        try:
            value, end = scanner.raw_decode(buffer, pos)
        except json.JSONDecodeError as error:
            if len(buffer) - pos < max_element_chars and fill():
                continue  # the element may just be cut off by the end of the buffer
            chunk.invalid += 1
            chunk.error = f"invalid JSON in the array: {error.msg}"
            break
        # A number at the end of the buffer may continue in the next read.
        if end >= len(buffer) and not eof and type(value) is not dict and fill():
            continue
        pos = end
        need_comma = True
        if type(value) is dict or (isinstance(value, str) and value and not value.isspace()):
            chunk.items.append(value)
        else:
            chunk.invalid += 1
        if len(chunk.items) >= chunk_records or pos >= chunk_bytes:
            yield chunk
            chunk = Chunk()
            buffer, pos = buffer[pos:], 0
    yield chunk


def timestamp_ms(obj: dict[str, Any]) -> int | None:
    """Epoch milliseconds of a JSON log object's timestamp, from the key Dynatrace reads it from;
    None: none or unreadable (Dynatrace then uses the ingest time). RFC 3164 (no year) is not
    read. Epoch nanoseconds are read as the moment they mean, though Dynatrace does not read them
    (it gives such a record the ingest time): a record that old is better counted than sent."""
    if "timestamp" in obj:  # the first key in Dynatrace's list, and the usual one
        return parse_timestamp(obj["timestamp"])
    found: dict[str, object] = {}
    for key, value in obj.items():
        folded = key.lower()
        if folded in _TIMESTAMP_KEY_SET:
            found.setdefault(folded, value)
    if not found:
        return None
    return parse_timestamp(next(found[key] for key in TIMESTAMP_KEYS if key in found))


def parse_timestamp(value: object) -> int | None:
    """Epoch ms (floored) of a timestamp value: ISO 8601, or epoch seconds/ms/µs/ns told apart by
    size; the rules are `dt_exporter._timestamps`', the same on every Python.

    `YYYY-MM-DD?hh:mm:ss...` (nearly every log line's shape) is read from two memos: the first 19
    characters (the second; a file's lines share it) and the rest (fraction and zone: a file has
    at most a few thousand distinct ones), each parsed once by `parse_timestamp_ns` and added up,
    which is what that parser computes (date-time plus fraction minus offset, each field checked
    on its own): ~0.3 µs instead of ~2 µs. tests/unit/test_lines.py holds the two equal."""
    if type(value) is str and len(value) >= 19 and value[16:17] == ":" and value[13:14] == ":":
        head = _SECONDS.get(value[:19])
        if head is None:
            head = _second_ms(value[:19])
        if head != _UNREADABLE:
            tail = _TAILS.get(value[19:])
            if tail is None:
                tail = _tail_ms(value[19:])
            return None if tail == _UNREADABLE else head + tail
    ns = parse_timestamp_ns(value)
    return None if ns is None else ns // 1_000_000


#: The memos of `parse_timestamp`: "YYYY-MM-DD?hh:mm:ss" -> epoch ms (exact: whole seconds);
#: what follows the seconds (up to _TAIL_MAX characters) -> its ns (fraction less offset)
#: floored to ms, so their sum is the floored ms of the whole. Each is cleared when it reaches
#: _MEMO_MAX entries; together they hold at most ~1 MB.
_SECONDS: Final[dict[str, int]] = {}
_TAILS: Final[dict[str, int]] = {}
_MEMO_MAX: Final = 4096
_TAIL_MAX: Final = 40
#: Memoised "not of this shape, or unreadable": no epoch ns is this far below zero (year 1 is
#: about -2**66 ns).
_UNREADABLE: Final = -(1 << 100)
_EPOCH_SECOND: Final = "1970-01-01T00:00:00"


def _second_ms(head: str) -> int:
    """The epoch ms of a 19-character `YYYY-MM-DD?hh:mm:ss` (memoised), else _UNREADABLE (a
    leading blank or any other shape: `parse_timestamp_ns` then reads the whole value)."""
    ns = parse_timestamp_ns(head) if head[4] == "-" and not head[0].isspace() else None
    if len(_SECONDS) >= _MEMO_MAX:
        _SECONDS.clear()
    _SECONDS[head] = result = _UNREADABLE if ns is None else ns // 1_000_000
    return result


def _tail_ms(tail: str) -> int:
    """The ns that `tail` (fraction, zone, blanks) adds to `YYYY-MM-DD?hh:mm:ss`, floored to
    ms, else _UNREADABLE (then the whole value is no timestamp). Memoised when short."""
    ns = parse_timestamp_ns(_EPOCH_SECOND + tail)
    result = _UNREADABLE if ns is None else ns // 1_000_000
    if len(tail) <= _TAIL_MAX:
        if len(_TAILS) >= _MEMO_MAX:
            _TAILS.clear()
        _TAILS[tail] = result
    return result
