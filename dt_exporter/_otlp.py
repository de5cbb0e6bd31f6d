"""OpenTelemetry log records → OTLP/HTTP `ExportLogsServiceRequest` bytes, written directly.

Dynatrace takes OTLP logs as binary protobuf at `/api/v2/otlp/v1/logs`
(https://docs.dynatrace.com/docs/ingest-from/opentelemetry/otlp-api/ingest-logs). The official
encoder builds one pb2 object per field (~22 µs a record); this module writes the wire format
itself (`dt_exporter._protowire`) and decodes to the same message. It is pure: no I/O, no clock,
no environment, no locks, and it never raises on a bad value.

Layout, as the official `encode_logs` does it: records are grouped by resource, then by scope
(equal objects share a group; groups keep first-seen order). Every `LogRecord` carries a body
(an empty `AnyValue` for `None`); zero timestamps, trace ids, span ids, flags and empty strings
are left out; `ScopeLogs.scope` is always present (empty when the record has no scope); the
`schema_url`s of resource and scope go on `ResourceLogs` and `ScopeLogs`.

Limits (`LimitProfile`), enforced as the JSON mapper (`dt_exporter.mapping`) enforces them;
each cut adds to `truncations[reason]`:
- "key": a key longer than `max_key_bytes` UTF-8 bytes is cut on a character boundary, without
  a marker (at any nesting level).
- "value": a string longer than `max_value_bytes` is cut with `truncate_utf8` (ends with the
  marker): attribute values, strings nested in a structured body, severity text, event name,
  scope name/version, schema URLs. Byte values are cut to `max_value_bytes // 4 * 3` bytes, so
  the base64 text Dynatrace makes of them fits `max_value_bytes`.
- "content": a string body longer than `max_content_bytes` is cut with `truncate_utf8`.
- "attributes": Dynatrace copies resource and scope attributes onto every record, so they count
  against `max_attributes` first (each capped at `max_attributes` on its own); record attributes
  beyond the remaining budget are dropped, counted by number, and added to the record's
  `dropped_attributes_count` (a resource or scope that loses attributes gets its own
  `dropped_attributes_count`). Only top-level attributes count, not the entries of nested maps.
- "array": an array longer than `max_values_per_attribute` keeps its first values.
- "nesting": a map nested deeper than `max_nesting_depth` (an attribute's map value is depth 1,
  a map body depth 0, each map inside adds one; arrays add nothing) is replaced by the string
  `<truncated due to nesting limit>`, which is what Dynatrace itself stores for OTLP. Anything
  more than `MAX_CONTAINER_DEPTH` (20) arrays and maps deep is replaced the same way: protobuf
  parsers reject messages nested more than 100 deep, and the stack stays safe.
Truncations inside a resource or a scope are counted once per call to `encode_log_requests`.

Values OTLP cannot carry as they are (never an exception):
- "invalid_unicode": lone surrogates in any text become U+FFFD (the official encoder fails to
  serialise them);
- NaN and infinities stay doubles (protobuf carries them);
- "value_type": an int outside int64 becomes its decimal string; a set or frozenset becomes an
  array of its members' `describe()` texts, sorted; a datetime, date or time becomes ISO 8601
  text; any other object (Decimal, ...) and any container whose iteration raises becomes its
  `describe()` text;
- bytes, bytearray and memoryview become `bytes_value` (the official encoder sends bytearray and
  memoryview as arrays of ints);
- non-string map keys become `describe(key)` (the official encoder uses `str(key)`: the same for
  any key whose `str()` works);
- "cyclic": a container found inside itself becomes the string `<cyclic>` at that point;
- a timestamp, flags, trace id or span id that does not fit its field (negative, too wide, not
  an int) is left out; a plain int severity number is kept (the official encoder keeps only
  enum members);
- a record that cannot be encoded at all (not shaped like a `ReadableLogRecord`, or its
  attributes changed by another thread while being read) is dropped:
  `dropped["unencodable"] += 1`.

Requests: each holds at most `max_records` records and `max_request_bytes` bytes; a record that
does not fit an otherwise empty request is dropped: `dropped["record_too_large"] += 1`.
`split_request`, `count_records` and `parse_partial_success` walk the wire format without
decoding it into objects.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import itertools
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from typing import Any, Final, NamedTuple

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk._logs import ReadableLogRecord

from dt_exporter._protowire import (
    I64,
    LEN,
    VARINT,
    VARINTS,
    VARINTS_SIZE,
    WireError,
    int64_varint,
    iter_fields,
    len_field,
    pack_double,
    pack_fixed32,
    varint,
    varint_size,
)
from dt_exporter._text import describe, scrub, truncate_utf8
from dt_exporter.limits import DEFAULT_OTLP_REQUEST_BYTES, LimitProfile

NESTING_MARKER: Final = "<truncated due to nesting limit>"
CYCLE_MARKER: Final = "<cyclic>"

_INT64_MIN: Final = -(1 << 63)
_INT64_LIMIT: Final = 1 << 63
_UINT32_MAX: Final = (1 << 32) - 1
_UINT64_LIMIT: Final = 1 << 64
_UINT64_MASK: Final = _UINT64_LIMIT - 1
_UINT128_LIMIT: Final = 1 << 128
#: Arrays and maps inside one value, at most. Each adds two or three message levels, and common
#: protobuf parsers (C++, Java, upb) refuse messages nested more than 100 deep by default: the
#: whole request would be rejected.
MAX_CONTAINER_DEPTH: Final = 20

# Field keys (field number << 3 | wire type), named by message and field.
_ANY_STRING: Final = b"\x0a"
_ANY_INT: Final = b"\x18"
_ANY_DOUBLE: Final = b"\x21"
_ANY_ARRAY: Final = b"\x2a"
_ANY_KVLIST: Final = b"\x32"
_ANY_BYTES: Final = b"\x3a"
_ANY_TRUE: Final = b"\x10\x01"
_ANY_FALSE: Final = b"\x10\x00"
# Length prefix and AnyValue of a double or bool, for the attribute fast path.
_FLOAT_HEAD: Final = b"\x09\x21"
_BOOL_TRUE: Final = b"\x02" + _ANY_TRUE
_BOOL_FALSE: Final = b"\x02" + _ANY_FALSE
_KV_KEY: Final = b"\x0a"
_KV_VALUE: Final = b"\x12"
_LIST_VALUES: Final = b"\x0a"  # ArrayValue.values and KeyValueList.values
_LOG_TIME: Final = 0x09  # fixed64 fields: a one-byte key, packed with the value
_LOG_SEVERITY_TEXT: Final = b"\x1a"
_LOG_BODY: Final = b"\x2a"
_LOG_ATTRIBUTE: Final = b"\x32"
_LOG_DROPPED: Final = b"\x38"
_LOG_FLAGS: Final = b"\x45"
_LOG_TRACE_ID: Final = b"\x4a\x10"
_LOG_SPAN_ID: Final = b"\x52\x08"
_LOG_OBSERVED_TIME: Final = 0x59
_LOG_EVENT_NAME: Final = b"\x62"
_SCOPE_LOGS_RECORD: Final = b"\x12"
_RESOURCE_LOGS_SCOPE_LOGS: Final = b"\x12"
_REQUEST_RESOURCE_LOGS: Final = b"\x0a"
# Both ids in one call: keys as big-endian shorts, the trace id as two halves.
_pack_ids: Final = struct.Struct(">HQQHQ").pack
#: A one-byte field key and a fixed64 value.
_pack_tagged64: Final = struct.Struct("<BQ").pack
_TRACE_ID_KEY: Final = int.from_bytes(_LOG_TRACE_ID, "big")
_SPAN_ID_KEY: Final = int.from_bytes(_LOG_SPAN_ID, "big")
#: `_STRING_HEADS[n]`: AnyValue length and string_value key and length, for n < 126 bytes.
_STRING_HEADS: Final = tuple(VARINTS[n + 2] + _ANY_STRING + VARINTS[n] for n in range(126))
_SEVERITY_FIELDS: Final = tuple(b"\x10" + VARINTS[n] for n in range(128))
_FLAGS_FIELDS: Final = tuple(_LOG_FLAGS + pack_fixed32(n) for n in range(256))


def _string_value(text: str) -> bytes:
    encoded = text.encode()
    return _ANY_STRING + varint(len(encoded)) + encoded


_Counts = collections.Counter[str]

_NESTING_VALUE: Final = _string_value(NESTING_MARKER)
_CYCLE_VALUE: Final = _string_value(CYCLE_MARKER)


class OtlpRequest(NamedTuple):
    """One request body for `/api/v2/otlp/v1/logs`."""

    data: bytes
    """A serialized `ExportLogsServiceRequest`, uncompressed."""
    records: int
    """How many `LogRecord`s it holds."""


class _ScopeGroup:
    """The records of one scope within one resource, each already a `log_records` field."""

    __slots__ = ("budget", "head", "records", "tail")

    def __init__(self, head: bytes, tail: bytes, budget: int) -> None:
        self.head = head  # ScopeLogs.scope field
        self.tail = tail  # ScopeLogs.schema_url field
        self.budget = budget  # attributes a record may still carry
        self.records: list[bytes] = []


class _ResourceGroup:
    __slots__ = ("attributes", "head", "scopes", "scopes_by_id", "scopes_by_value", "tail")

    def __init__(self, head: bytes, tail: bytes, attributes: int) -> None:
        self.head = head  # ResourceLogs.resource field
        self.tail = tail  # ResourceLogs.schema_url field
        self.attributes = attributes
        self.scopes: list[_ScopeGroup] = []
        self.scopes_by_id: dict[int, _ScopeGroup] = {}
        self.scopes_by_value: dict[object, _ScopeGroup] = {}


class _Header(NamedTuple):
    """The encoded, cached part of a resource or a scope."""

    owner: object  # kept alive so that its id() cannot be reused while cached
    head: bytes
    tail: bytes
    attributes: int
    truncations: tuple[tuple[str, int], ...]


class _Encoder:
    """Encodes values under one limit profile; caches what repeats across batches."""

    _MAX_KEYS: Final = 4096
    _MAX_TEXTS: Final = 1024
    _MAX_HEADERS: Final = 64

    def __init__(self, profile: LimitProfile) -> None:
        self._max_key = profile.max_key_bytes
        self._max_value = profile.max_value_bytes
        self._max_bytes_value = max(profile.max_value_bytes, 0) // 4 * 3
        self._max_content = profile.max_content_bytes
        #: Strings shorter than this need no cut and fit a one-byte AnyValue length.
        self._short_string = min(126, profile.max_value_bytes + 1)
        self._max_values = max(profile.max_values_per_attribute, 0)
        self._max_nesting = profile.max_nesting_depth
        self._max_attributes = max(profile.max_attributes, 0)
        #: attribute key -> `KeyValue.key` field, for keys that need no cut.
        self._keys: dict[str, bytes] = {}
        #: severity text / event name -> the whole LogRecord field, for texts that need no cut.
        self._severity_texts: dict[object, bytes] = {}
        self._event_names: dict[object, bytes] = {}
        self._resources: dict[int, _Header] = {}
        self._scopes: dict[int, _Header] = {}

    # -- text ------------------------------------------------------------------------------

    @staticmethod
    def _utf8(
        text: str, limit: int, reason: str, truncations: _Counts, *, marker: bool = True
    ) -> tuple[bytes, bool]:
        """UTF-8 of `text`, lone surrogates scrubbed, cut to `limit` bytes; and if it changed.

        Values are cut with `truncate_utf8` (which ends them with the marker); keys are cut bare,
        as the JSON mapper cuts them.
        """
        changed = False
        try:
            encoded = str.encode(text)
        except UnicodeEncodeError:
            truncations["invalid_unicode"] += 1
            encoded = str.encode(scrub(text))
            changed = True
        if len(encoded) > limit:
            truncations[reason] += 1
            changed = True
            if marker:
                encoded = truncate_utf8(encoded.decode(), limit)[0].encode()
            else:
                encoded = encoded[: max(limit, 0)].decode("utf-8", "ignore").encode()
        return encoded, changed

    def _key_prefix(self, key: object, truncations: _Counts) -> bytes:
        """A KeyValue's `key` field (left out for "", as proto3 does) and its `value` field key."""
        text = key if isinstance(key, str) else describe(key)
        encoded, changed = self._utf8(text, self._max_key, "key", truncations, marker=False)
        prefix = (_KV_KEY + varint(len(encoded)) + encoded if encoded else b"") + _KV_VALUE
        # Cached prefixes stay short enough for the one-byte-table arithmetic in _attributes;
        # a key that had to change is counted each time it is seen, so it is not cached.
        if type(key) is str and not changed and len(prefix) <= 2048:
            if len(self._keys) >= self._MAX_KEYS:
                self._keys.clear()
            self._keys[key] = prefix
        return prefix

    def _text_field(
        self, key: bytes, text: object, truncations: _Counts,
        cache: dict[object, bytes] | None = None,
    ) -> bytes:
        """A string field outside AnyValue (severity text, event name, scope name, schema URL).

        Held to `max_value_bytes`; cached in `cache` when it needed no change.
        """
        raw = text if isinstance(text, str) else describe(text)
        encoded, changed = self._utf8(raw, self._max_value, "value", truncations)
        field = key + varint(len(encoded)) + encoded
        if cache is not None and type(text) is str and not changed:
            if len(cache) >= self._MAX_TEXTS:
                cache.clear()
            cache[text] = field
        return field

    # -- AnyValue ---------------------------------------------------------------------------

    def _any_value(
        self, value: object, depth: int, truncations: _Counts, active: set[int] | None
    ) -> bytes:
        """The payload of an `AnyValue`.

        `depth` counts the maps around `value` (an attribute's own map included, so an
        attribute value is at depth 1 and a body at 0); `active` holds the ids of the containers
        being encoded around it, to find cycles.
        """
        if value is None:
            return b""
        if isinstance(value, bool):
            return _ANY_TRUE if value else _ANY_FALSE
        if isinstance(value, str):
            encoded = self._utf8(value, self._max_value, "value", truncations)[0]
            return _ANY_STRING + varint(len(encoded)) + encoded
        if isinstance(value, int):
            if _INT64_MIN <= value < _INT64_LIMIT:
                return _ANY_INT + int64_varint(value)
            return self._described(value, truncations)
        if isinstance(value, float):
            return _ANY_DOUBLE + pack_double(value)
        try:
            if isinstance(value, bytes | bytearray | memoryview):
                raw = bytes(value)
                if len(raw) > self._max_bytes_value:
                    truncations["value"] += 1
                    raw = raw[: self._max_bytes_value]
                return _ANY_BYTES + varint(len(raw)) + raw
            if isinstance(value, Sequence):
                return self._array(value, value, depth, truncations, active)
            if isinstance(value, Mapping):
                return self._kvlist(value, depth, truncations, active)
            if isinstance(value, Set):
                members = sorted(describe(member) for member in value)
                truncations["value_type"] += 1
                return self._array(value, members, depth, truncations, active)
        except Exception:  # user containers may raise anything while iterated
            return self._described(value, truncations)
        return self._described(value, truncations)

    def _described(self, value: object, truncations: _Counts) -> bytes:
        """A string `AnyValue` for a value OTLP cannot carry as it is."""
        truncations["value_type"] += 1
        text = describe(value)
        if isinstance(value, datetime.date | datetime.time):  # datetime is a date
            with contextlib.suppress(Exception):
                text = value.isoformat()  # as the JSON mapper writes it
        encoded = self._utf8(text, self._max_value, "value", truncations)[0]
        return _ANY_STRING + varint(len(encoded)) + encoded

    def _enter(self, container: object, truncations: _Counts, active: set[int]) -> bytes | None:
        """The marker to use instead of `container`, or None to go in."""
        if id(container) in active:
            truncations["cyclic"] += 1
            return _CYCLE_VALUE
        if len(active) >= MAX_CONTAINER_DEPTH:
            truncations["nesting"] += 1
            return _NESTING_VALUE
        return None

    def _array(
        self,
        container: object,
        values: Sequence[object],
        depth: int,
        truncations: _Counts,
        active: set[int] | None,
    ) -> bytes:
        if active is None:
            active = set()
        marker = self._enter(container, truncations, active)
        if marker is not None:
            return marker
        items: Iterable[object] = values
        if len(values) > self._max_values:
            truncations["array"] += 1
            items = itertools.islice(values, self._max_values)
        parts = []
        active.add(id(container))
        try:
            for item in items:
                encoded = self._any_value(item, depth, truncations, active)
                parts.append(_LIST_VALUES + varint(len(encoded)) + encoded)
        finally:
            active.discard(id(container))
        inner = b"".join(parts)
        return _ANY_ARRAY + varint(len(inner)) + inner

    def _kvlist(
        self, mapping: Mapping[object, object], depth: int, truncations: _Counts,
        active: set[int] | None,
    ) -> bytes:
        if active is None:
            active = set()
        marker = self._enter(mapping, truncations, active)
        if marker is not None:
            return marker
        if depth > self._max_nesting and len(mapping):
            truncations["nesting"] += 1
            return _NESTING_VALUE
        parts = []
        keys = self._keys
        active.add(id(mapping))
        try:
            for key, item in mapping.items():
                key_prefix = keys.get(key) if type(key) is str else None
                if key_prefix is None:
                    key_prefix = self._key_prefix(key, truncations)
                encoded = self._any_value(item, depth + 1, truncations, active)
                pair = key_prefix + varint(len(encoded)) + encoded
                parts.append(_LIST_VALUES + varint(len(pair)) + pair)
        finally:
            active.discard(id(mapping))
        inner = b"".join(parts)
        return _ANY_KVLIST + varint(len(inner)) + inner

    # -- attributes -------------------------------------------------------------------------

    def _attributes(
        self, attributes: object, field_key: bytes, budget: int, truncations: _Counts,
        parts: list[bytes],
    ) -> int:
        """Append one `field_key` KeyValue field per attribute; return how many were dropped."""
        # BoundedAttributes.items() costs a Python call per item; its dict holds the same pairs.
        mapping: Mapping[Any, Any]
        if type(attributes) is BoundedAttributes:
            mapping = attributes._dict
        elif isinstance(attributes, Mapping):
            mapping = attributes
        else:
            return 0
        count = len(mapping)
        if not count:
            return 0
        items: Iterable[tuple[Any, Any]] = mapping.items()
        dropped = count - budget
        if dropped > 0:
            truncations["attributes"] += dropped
            items = itertools.islice(items, budget)
        keys = self._keys
        max_value = self._max_value
        short_string = self._short_string
        append = parts.append
        extend = parts.extend
        # Fast paths for the scalar types nearly all attributes have: no nested messages built,
        # lengths by arithmetic. A cached key prefix is at most 2,048 bytes, so every length
        # below stays inside the VARINTS table.
        for key, value in items:
            prefix = keys.get(key)
            if prefix is None:
                prefix = self._key_prefix(key, truncations)
                if len(prefix) > 2048:
                    self._long_pair(prefix, value, field_key, truncations, append)
                    continue
            kind = type(value)
            if kind is str:
                try:
                    encoded = value.encode()
                except UnicodeEncodeError:
                    encoded = self._utf8(value, max_value, "value", truncations)[0]
                size = len(encoded)
                if size < short_string:  # uncut, and every varint in the AnyValue is one byte
                    extend((
                        field_key, VARINTS[len(prefix) + size + 3], prefix,
                        _STRING_HEADS[size], encoded
                    ))
                    continue
                if size > max_value:
                    encoded = self._utf8(encoded.decode(), max_value, "value", truncations)[0]
                any_value = _ANY_STRING + varint(len(encoded)) + encoded
            elif kind is float:
                append(field_key + VARINTS[len(prefix) + 10] + prefix + _FLOAT_HEAD
                       + pack_double(value))
                continue
            elif kind is int and 0 <= value < VARINTS_SIZE:
                number = VARINTS[value]
                size = len(number) + 1
                append(field_key + VARINTS[len(prefix) + size + 1] + prefix + VARINTS[size]
                       + _ANY_INT + number)
                continue
            elif kind is bool:
                append(field_key + VARINTS[len(prefix) + 3] + prefix
                       + (_BOOL_TRUE if value else _BOOL_FALSE))
                continue
            else:
                any_value = self._any_value(value, 1, truncations, None)
            pair = prefix + varint(len(any_value)) + any_value
            append(field_key + varint(len(pair)) + pair)
        return max(dropped, 0)

    def _long_pair(
        self, prefix: bytes, value: object, field_key: bytes, truncations: _Counts,
        append: Callable[[bytes], None],
    ) -> None:
        """One KeyValue field whose key prefix is too long for the fast paths."""
        any_value = self._any_value(value, 1, truncations, None)
        pair = prefix + varint(len(any_value)) + any_value
        append(field_key + varint(len(pair)) + pair)

    # -- resource and scope -----------------------------------------------------------------

    def resource(self, resource: object) -> _Header:
        """`ResourceLogs.resource` and `.schema_url` fields for `resource`, cached by identity."""
        cached = self._resources.get(id(resource))
        if cached is not None and cached.owner is resource:
            return cached
        # Resource: attributes = 1, dropped_attributes_count = 2.
        return self._header(resource, (), b"\x0a", b"\x10", self._resources)

    def scope(self, scope: object) -> _Header:
        """`ScopeLogs.scope` and `.schema_url` fields for `scope`, cached by identity."""
        cached = self._scopes.get(id(scope))
        if cached is not None and cached.owner is scope:
            return cached
        # InstrumentationScope: name = 1, version = 2, attributes = 3, dropped count = 4.
        texts = ((b"\x0a", getattr(scope, "name", None)),
                 (b"\x12", getattr(scope, "version", None)))
        return self._header(scope, texts, b"\x1a", b"\x20", self._scopes)

    def _header(
        self,
        owner: object,
        texts: Iterable[tuple[bytes, object]],
        attribute_key: bytes,
        dropped_key: bytes,
        cache: dict[int, _Header],
    ) -> _Header:
        truncations: _Counts = collections.Counter()
        parts = [self._text_field(key, text, truncations) for key, text in texts if text]
        count = 0
        schema_url = ""
        if owner is not None:
            attributes = getattr(owner, "attributes", None)
            count = len(attributes) if isinstance(attributes, Mapping) else 0
            dropped = self._attributes(
                attributes, attribute_key, self._max_attributes, truncations, parts
            )
            count -= dropped
            if dropped:
                parts.append(dropped_key + varint(dropped))
            schema_url = getattr(owner, "schema_url", "") or ""
        header = _Header(
            owner=owner,
            head=len_field(1, b"".join(parts)),  # ResourceLogs.resource / ScopeLogs.scope
            tail=self._schema_url_field(schema_url, truncations),
            attributes=count,
            truncations=tuple(truncations.items()),
        )
        if len(cache) >= self._MAX_HEADERS:
            cache.clear()
        cache[id(owner)] = header
        return header

    def _schema_url_field(self, schema_url: object, truncations: _Counts) -> bytes:
        """Field 3 of both ResourceLogs and ScopeLogs; left out when empty."""
        if not schema_url:
            return b""
        return self._text_field(b"\x1a", schema_url, truncations)

    # -- LogRecord --------------------------------------------------------------------------

    def record(self, record: ReadableLogRecord, budget: int, truncations: _Counts) -> bytes:
        """One `ScopeLogs.log_records` field (key, length and LogRecord), fields in number order."""
        log = record.log_record
        parts: list[bytes] = []
        append = parts.append
        timestamp = log.timestamp
        if type(timestamp) is int and 0 < timestamp < _UINT64_LIMIT:
            append(_pack_tagged64(_LOG_TIME, timestamp))
        severity = log.severity_number
        if severity is not None:
            number = getattr(severity, "_value_", severity)  # Enum's plain slot; `.value` is slow
            if type(number) is int and 0 < number < 128:
                append(_SEVERITY_FIELDS[number])
        severity_text = log.severity_text
        if severity_text:
            field = (self._severity_texts.get(severity_text)
                     if type(severity_text) is str else None)
            if field is None:
                field = self._text_field(
                    _LOG_SEVERITY_TEXT, severity_text, truncations, self._severity_texts
                )
            append(field)

        body = log.body
        body_field = None
        if type(body) is str:
            try:
                encoded = body.encode()
                size = len(encoded)
                if size < 126 and size <= self._max_content:
                    body_field = _LOG_BODY + _STRING_HEADS[size] + encoded
            except UnicodeEncodeError:
                pass  # _body_field scrubs it
        append(body_field or self._body_field(body, truncations))

        attributes = log.attributes
        dropped = self._attributes(attributes, _LOG_ATTRIBUTE, budget, truncations, parts)
        if type(attributes) is BoundedAttributes:  # what ReadableLogRecord.dropped_attributes reads
            dropped += attributes.dropped
        if dropped > 0:
            append(_LOG_DROPPED + varint(min(dropped, _UINT32_MAX)))
        flags = log.trace_flags
        if flags and isinstance(flags, int):  # TraceFlags is an int
            if 0 < flags < 256:
                append(_FLAGS_FIELDS[flags])
            elif 0 < flags <= _UINT32_MAX:
                append(_LOG_FLAGS + pack_fixed32(flags))
        trace_id = log.trace_id
        span_id = log.span_id
        if (
            type(trace_id) is int and 0 < trace_id < _UINT128_LIMIT
            and type(span_id) is int and 0 < span_id < _UINT64_LIMIT
        ):
            append(_pack_ids(_TRACE_ID_KEY, trace_id >> 64, trace_id & _UINT64_MASK,
                             _SPAN_ID_KEY, span_id))
        elif trace_id or span_id:
            self._ids(trace_id, span_id, append)
        observed = log.observed_timestamp
        if type(observed) is int and 0 < observed < _UINT64_LIMIT:
            append(_pack_tagged64(_LOG_OBSERVED_TIME, observed))
        event_name = log.event_name
        if event_name:
            field = self._event_names.get(event_name) if type(event_name) is str else None
            if field is None:
                field = self._text_field(
                    _LOG_EVENT_NAME, event_name, truncations, self._event_names
                )
            append(field)

        data = b"".join(parts)
        size = len(data)
        return _SCOPE_LOGS_RECORD + (VARINTS[size] if size < VARINTS_SIZE else varint(size)) + data

    def _body_field(self, body: object, truncations: _Counts) -> bytes:
        """The `LogRecord.body` field; present even for None, as the official encoder sends it."""
        if isinstance(body, str):
            encoded = self._utf8(body, self._max_content, "content", truncations)[0]
            any_value = _ANY_STRING + varint(len(encoded)) + encoded
        else:
            any_value = self._any_value(body, 0, truncations, None)
        return _LOG_BODY + varint(len(any_value)) + any_value

    @staticmethod
    def _ids(trace_id: object, span_id: object, append: Callable[[bytes], None]) -> None:
        """Trace and span id when not both are valid; an id that does not fit is left out."""
        if type(trace_id) is int and 0 < trace_id < _UINT128_LIMIT:
            append(_LOG_TRACE_ID + trace_id.to_bytes(16, "big"))
        if type(span_id) is int and 0 < span_id < _UINT64_LIMIT:
            append(_LOG_SPAN_ID + span_id.to_bytes(8, "big"))

    # -- batch ------------------------------------------------------------------------------

    def group(
        self, records: Iterable[ReadableLogRecord], truncations: _Counts, dropped: _Counts,
        enrich: Callable[[object], object] | None = None,
    ) -> list[_ResourceGroup]:
        """Encode each record into its resource and scope group, in first-seen order (each
        resource passed through `enrich` first, when given)."""
        groups: list[_ResourceGroup] = []
        by_id: dict[int, _ResourceGroup] = {}
        by_value: dict[object, _ResourceGroup] = {}
        for record in records:
            try:
                resource = record.resource if enrich is None else enrich(record.resource)
                resource_group = by_id.get(id(resource))
                if resource_group is None:
                    resource_group = self._resource_group(
                        resource, by_value, groups, truncations
                    )
                    by_id[id(resource)] = resource_group
                scope = record.instrumentation_scope
                scope_group = resource_group.scopes_by_id.get(id(scope))
                if scope_group is None:
                    scope_group = self._scope_group(scope, resource_group, truncations)
                    resource_group.scopes_by_id[id(scope)] = scope_group
                scope_group.records.append(
                    self.record(record, scope_group.budget, truncations)
                )
            except Exception:  # not a ReadableLogRecord; never fail the batch
                dropped["unencodable"] += 1
        return groups

    def _resource_group(
        self,
        resource: object,
        by_value: dict[object, _ResourceGroup],
        groups: list[_ResourceGroup],
        truncations: _Counts,
    ) -> _ResourceGroup:
        # Equal resources share a group, as in the official encoder's dict keyed by Resource.
        try:
            found = by_value.get(resource)
            hashable = True
        except Exception:  # Resource.__hash__ JSON-dumps the attributes
            found, hashable = None, False
        if found is not None:
            return found
        header = self.resource(resource)
        truncations.update(dict(header.truncations))
        group = _ResourceGroup(header.head, header.tail, header.attributes)
        groups.append(group)
        if hashable:
            by_value[resource] = group
        return group

    def _scope_group(
        self, scope: object, resource_group: _ResourceGroup, truncations: _Counts
    ) -> _ScopeGroup:
        try:
            found = resource_group.scopes_by_value.get(scope)
            hashable = True
        except Exception:  # a foreign scope object may not hash
            found, hashable = None, False
        if found is not None:
            return found
        header = self.scope(scope)
        truncations.update(dict(header.truncations))
        budget = max(self._max_attributes - resource_group.attributes - header.attributes, 0)
        group = _ScopeGroup(header.head, header.tail, budget)
        resource_group.scopes.append(group)
        if hashable:
            resource_group.scopes_by_value[scope] = group
        return group


class _MergedResource:
    """A resource with enrichment merged under its attributes. Equal when the sources are
    equal (one `_Enriched` makes them all from one enrichment), so grouping by value holds."""

    __slots__ = ("attributes", "schema_url", "source")

    def __init__(self, source: object, attributes: dict[Any, Any]) -> None:
        self.source = source
        self.attributes = attributes
        self.schema_url = getattr(source, "schema_url", "")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _MergedResource) and bool(self.source == other.source)

    def __hash__(self) -> int:
        return hash(self.source)


class _Enriched:
    """Merges one enrichment under resources; the merged objects are cached by the source's
    identity across calls, so the encoder's header cache (also by identity) keeps hitting."""

    _MAX: Final = 64

    def __init__(self, enrichment: Mapping[str, Any]) -> None:
        self.enrichment = enrichment  # kept alive so that its id() cannot be reused while cached
        self._merged: dict[int, tuple[object, object]] = {}

    def __call__(self, resource: object) -> object:
        hit = self._merged.get(id(resource))
        if hit is not None and hit[0] is resource:
            return hit[1]
        attributes = getattr(resource, "attributes", None)
        mapping: Mapping[Any, Any] = (
            attributes._dict if type(attributes) is BoundedAttributes
            else attributes if isinstance(attributes, Mapping) else {}
        )
        extra = {k: v for k, v in self.enrichment.items() if k not in mapping}
        merged = _MergedResource(resource, {**mapping, **extra}) if extra else resource
        if len(self._merged) >= self._MAX:
            self._merged.clear()
        self._merged[id(resource)] = (resource, merged)
        return merged


_ENRICHED: dict[int, _Enriched] = {}


def _enriched_for(enrichment: Mapping[str, Any]) -> _Enriched:
    enriched = _ENRICHED.get(id(enrichment))
    if enriched is None or enriched.enrichment is not enrichment:
        if len(_ENRICHED) >= _MAX_ENCODERS:
            _ENRICHED.clear()
        enriched = _ENRICHED[id(enrichment)] = _Enriched(enrichment)
    return enriched


_ENCODERS: dict[LimitProfile, _Encoder] = {}
_MAX_ENCODERS: Final = 8


def _encoder_for(profile: LimitProfile) -> _Encoder:
    encoder = _ENCODERS.get(profile)
    if encoder is None:
        if len(_ENCODERS) >= _MAX_ENCODERS:
            _ENCODERS.clear()
        encoder = _ENCODERS[profile] = _Encoder(profile)
    return encoder


# -- requests -------------------------------------------------------------------------------


def encode_log_requests(
    records: Sequence[ReadableLogRecord],
    profile: LimitProfile,
    *,
    max_request_bytes: int = DEFAULT_OTLP_REQUEST_BYTES,
    max_records: int = 50_000,
    truncations: collections.Counter[str],
    dropped: collections.Counter[str],
    enrichment: Mapping[str, Any] | None = None,
) -> list[OtlpRequest]:
    """Encode `records` into as few requests as fit `max_request_bytes` and `max_records`.

    Cuts made to fit `profile` are added to `truncations` by reason; records left out are added
    to `dropped` by reason ("record_too_large", "unencodable"). Never raises on bad values.
    `enrichment` (Dynatrace's entity attributes) goes under each resource's attributes: the
    resource's own value wins a clash; its keys follow the resource's. None or empty: no merge.
    """
    enrich = _enriched_for(enrichment) if enrichment else None
    groups = _encoder_for(profile).group(records, truncations, dropped, enrich)
    builder = _RequestBuilder(max_request_bytes, max_records)
    for resource_group in groups:
        for scope_group in resource_group.scopes:
            builder.add_scope(resource_group, scope_group, dropped)
    builder.flush()
    return builder.requests


class _RequestBuilder:
    """Fills requests greedily, in order, never over the byte or record limit."""

    def __init__(self, max_bytes: int, max_records: int) -> None:
        self.max_bytes = max_bytes
        self.max_records = max(max_records, 1)
        # Every length prefix inside a request that fits takes at most this many bytes, so
        # sizes counted with it are upper bounds of the real ones.
        self.prefix = varint_size(max(max_bytes, 0))
        self.requests: list[OtlpRequest] = []
        self.pending: list[tuple[_ResourceGroup, list[_PendingScope]]] = []
        self.size = 0
        self.count = 0

    def _opening_cost(self, resource: _ResourceGroup, scope: _ScopeGroup) -> int:
        """Bytes the ResourceLogs/ScopeLogs wrappers add if `scope`'s records go in now."""
        scope_cost = 1 + self.prefix + len(scope.head) + len(scope.tail)
        if self.pending and self.pending[-1][0] is resource:
            return 0 if self.pending[-1][1][-1].scope is scope else scope_cost
        return 1 + self.prefix + len(resource.head) + len(resource.tail) + scope_cost

    def add_scope(
        self, resource: _ResourceGroup, scope: _ScopeGroup, dropped: _Counts
    ) -> None:
        """Add all records of `scope`, starting new requests as they fill up."""
        records = scope.records
        total = len(records)
        remaining_bytes = sum(map(len, records))
        start = 0
        while start < total:
            room = self.max_bytes - self.size - self._opening_cost(resource, scope)
            slots = self.max_records - self.count
            if total - start <= slots and remaining_bytes <= room:
                end, used = total, remaining_bytes  # the common case: all the rest fits
            else:
                end, used = start, 0
                while end < total and end - start < slots:
                    size = len(records[end])
                    if used + size > room:
                        break
                    used += size
                    end += 1
            if end > start:
                self._add(resource, scope, records[start:end], used)
                remaining_bytes -= used
                start = end
                if start < total:
                    self.flush()
            elif self.count:
                self.flush()
            else:
                record = records[start]
                if _single_record_size(resource, scope, record) <= self.max_bytes:
                    self._add(resource, scope, [record], len(record))
                    self.flush()
                else:
                    dropped["record_too_large"] += 1
                remaining_bytes -= len(record)
                start += 1

    def _add(
        self, resource: _ResourceGroup, scope: _ScopeGroup, records: list[bytes], size: int
    ) -> None:
        self.size += self._opening_cost(resource, scope) + size
        self.count += len(records)
        if not self.pending or self.pending[-1][0] is not resource:
            self.pending.append((resource, []))
        scopes = self.pending[-1][1]
        if scopes and scopes[-1].scope is scope:
            scopes[-1].records.extend(records)
            scopes[-1].size += size
        else:
            scopes.append(_PendingScope(scope, records, size))

    def flush(self) -> None:
        """Close the pending request: one join, lengths worked out from the parts' sizes."""
        if not self.count:
            return
        pieces: list[bytes] = []
        for resource, scopes in self.pending:
            resource_logs = len(resource.head) + len(resource.tail)
            for pending in scopes:
                pending.size += len(pending.scope.head) + len(pending.scope.tail)
                resource_logs += 1 + varint_size(pending.size) + pending.size
            pieces += (_REQUEST_RESOURCE_LOGS, varint(resource_logs), resource.head)
            for pending in scopes:
                pieces += (_RESOURCE_LOGS_SCOPE_LOGS, varint(pending.size), pending.scope.head)
                pieces += pending.records
                pieces.append(pending.scope.tail)
            pieces.append(resource.tail)
        self.requests.append(OtlpRequest(b"".join(pieces), self.count))
        self.pending = []
        self.size = self.count = 0


class _PendingScope:
    """Records of one scope waiting in the pending request; `size` counts their bytes."""

    __slots__ = ("records", "scope", "size")

    def __init__(self, scope: _ScopeGroup, records: list[bytes], size: int) -> None:
        self.scope = scope
        self.records = records
        self.size = size


def _single_record_size(resource: _ResourceGroup, scope: _ScopeGroup, record: bytes) -> int:
    """The exact size of a request holding only `record`."""
    scope_logs = len(scope.head) + len(record) + len(scope.tail)
    resource_logs = (
        len(resource.head) + 1 + varint_size(scope_logs) + scope_logs + len(resource.tail)
    )
    return 1 + varint_size(resource_logs) + resource_logs


# -- reading requests and responses back ----------------------------------------------------

# The repeated field on the path to the records, per level: ExportLogsServiceRequest.resource_logs
# (1) → ResourceLogs.scope_logs (2) → ScopeLogs.log_records (2).
_CHILD_FIELD: Final = (1, 2, 2)
_LEAF_LEVEL: Final = 2


def count_records(data: bytes) -> int:
    """How many LogRecords a serialized `ExportLogsServiceRequest` holds.

    Raises `ValueError` (a `WireError`) if `data` is not a well-formed protobuf message.
    """
    return _count(data, 0)


def _count(data: bytes, level: int) -> int:
    child = _CHILD_FIELD[level]
    if level == _LEAF_LEVEL:
        return sum(1 for f in iter_fields(data) if f.number == child and f.wire_type == LEN)
    return sum(
        _count(data[f.value_start : f.end], level + 1)
        for f in iter_fields(data)
        if f.number == child and f.wire_type == LEN
    )


def split_request(data: bytes) -> tuple[bytes, bytes] | None:
    """Split a serialized request into two valid ones with about half of the records each.

    Record order is kept; a ResourceLogs or ScopeLogs cut in two is repeated in both halves, with
    its resource, scope and schema URL. None if `data` holds fewer than two records or is not
    well-formed.
    """
    try:
        total = _count(data, 0)
        if total < 2:
            return None
        return _split(data, 0, total // 2)
    except WireError:
        return None


def _split(data: bytes, level: int, take: int) -> tuple[bytes, bytes]:
    """Cut one message so that its first part holds the first `take` records.

    Fields other than the records' path (resource, scope, schema_url, unknown fields) are copied
    to both parts in place, so each part is the same message with fewer records.
    """
    child = _CHILD_FIELD[level]
    first: list[bytes] = []
    second: list[bytes] = []
    for field in iter_fields(data):
        whole = data[field.start : field.end]
        if field.number != child or field.wire_type != LEN:
            first.append(whole)
            second.append(whole)
            continue
        size = 1 if level == _LEAF_LEVEL else _count(data[field.value_start : field.end], level + 1)
        if take >= size and (take > 0 or size > 0):
            first.append(whole)
            take -= size
        elif take == 0:
            second.append(whole)
        else:
            head, tail = _split(data[field.value_start : field.end], level + 1, take)
            key = data[field.start : field.start + 1]  # field 1 or 2, wire type LEN: one byte
            first.append(key + varint(len(head)) + head)
            second.append(key + varint(len(tail)) + tail)
            take = 0
    return b"".join(first), b"".join(second)


def parse_partial_success(data: bytes) -> tuple[int, str]:
    """(rejected_log_records, error_message) from an `ExportLogsServiceResponse` body.

    (0, "") when the body is empty, has no partial_success, or is not protobuf at all.
    """
    rejected, message = 0, ""
    try:
        for field in iter_fields(data):
            if field.number != 1 or field.wire_type != LEN:
                continue
            # A repeated sub-message merges into the earlier one, as protobuf parsers do.
            partial = data[field.value_start : field.end]
            for inner in iter_fields(partial):
                if inner.number == 1 and inner.wire_type == VARINT:
                    rejected = inner.varint
                elif inner.number == 2 and inner.wire_type == LEN:
                    raw = partial[inner.value_start : inner.end]
                    message = raw.decode("utf-8", "replace")
    except WireError:
        return 0, ""
    if rejected >= _INT64_LIMIT:  # int64 on the wire: a negative count means nothing
        rejected = 0
    return rejected, message


# LogRecord.time_unix_nano (1) and observed_time_unix_nano (11), both fixed64.
_TIME_FIELDS: Final = (1, 11)


def expire_records(data: bytes, cutoff_ns: int) -> tuple[bytes | None, int, int, int]:
    """Drop the LogRecords stamped before `cutoff_ns` (their time, else their observed time).

    Returns (the request without them, or None when none is left; records kept; records
    dropped; the oldest kept timestamp, 0 if none has one). A ScopeLogs or ResourceLogs left
    empty is dropped too. A malformed request is returned whole.
    """
    try:
        kept, expired, oldest = _expire(data, 0, cutoff_ns)
    except WireError:
        return data, count_records_or_zero(data), 0, 0
    if not expired:
        return data, _count(data, 0), 0, oldest
    left = _count(kept, 0)
    return (kept if left else None), left, expired, oldest


def count_records_or_zero(data: bytes) -> int:
    try:
        return _count(data, 0)
    except WireError:
        return 0


def _record_time(record: bytes) -> int:
    times = {f.number: record[f.value_start:f.end] for f in iter_fields(record)
             if f.number in _TIME_FIELDS and f.wire_type == I64}
    for number in _TIME_FIELDS:
        raw = times.get(number)
        if raw is not None:
            value: int = struct.unpack("<Q", raw)[0]
            if value:
                return value
    return 0


def _expire(data: bytes, level: int, cutoff_ns: int) -> tuple[bytes, int, int]:
    """(message without the expired records, records expired, oldest kept timestamp)."""
    child = _CHILD_FIELD[level]
    out: list[bytes] = []
    expired = oldest = 0
    for field in iter_fields(data):
        whole = data[field.start:field.end]
        if field.number != child or field.wire_type != LEN:
            out.append(whole)
            continue
        inner = data[field.value_start:field.end]
        if level == _LEAF_LEVEL:
            ts = _record_time(inner)
            if ts and ts < cutoff_ns:
                expired += 1
                continue
            if ts:
                oldest = ts if not oldest else min(oldest, ts)
            out.append(whole)
            continue
        kept, gone, old = _expire(inner, level + 1, cutoff_ns)
        expired += gone
        if old:
            oldest = old if not oldest else min(oldest, old)
        if gone and _count(kept, level + 1) == 0:
            continue  # a ScopeLogs / ResourceLogs with no record left
        if gone:
            key = data[field.start:field.start + 1]
            out.append(key + varint(len(kept)) + kept)
        else:
            out.append(whole)
    return b"".join(out), expired, oldest
