"""Pure: an OpenTelemetry log record becomes one Dynatrace JSON log object, inside the limits.

Field rules (https://docs.dynatrace.com/docs/analyze-explore-automate/logs/lma-log-ingestion/
lma-log-ingestion-via-api/lma-ingest-json-txt-logs):
- `content`: a string body as is; None is ""; bytes are base64; any other body is JSON text.
- `timestamp`: epoch milliseconds from the record's timestamp, else its observed timestamp.
- `loglevel`: from the severity number (table below), else from the severity text.
- `trace_id` / `span_id`: 32 / 16 lower-case hex when the record carries a span context, plus
  `dt.trace_sampled`.
- resource attributes, `otel.scope.name` / `otel.scope.version`, `event.name`, then the record's
  attributes (which win on a clash), nested mappings flattened to dotted keys.
- an attribute named like a special field (`content`, `timestamp`, ...) is renamed `attr.<key>`
  so it cannot replace the field.

Values: str/int/float/bool/None as JSON; NaN and infinities as strings; ints beyond 64 bits,
Decimals and other objects as their `str()`; datetimes as ISO 8601; bytes as base64; sets as
sorted lists; a cycle as the string `<cyclic>`. Every cut is counted in `truncations`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from dt_exporter._text import (
    CYCLIC,
    JSON_INT_MAX,
    JSON_INT_MIN,
    bytes_to_text,
    describe,
    float_to_json,
    int_text,
    json_dumps,
    json_tree,
    scalar_text,
    scrub,
    truncate_utf8,
    utf8_len,
)
from dt_exporter.limits import LimitProfile

JsonObject = dict[str, Any]

#: OTel SeverityNumber ranges -> Dynatrace loglevel. Every value is one Dynatrace keeps under its
#: first-letter rule too, so the level survives whichever way a tenant reads the key. FATAL
#: (Python's CRITICAL) becomes CRITICAL: "FATAL" would be read as EMERGENCY by that rule.
_LEVEL_BY_RANGE: Final = (
    (4, "DEBUG"),  # TRACE 1-4: Dynatrace maps "trace" to DEBUG
    (8, "DEBUG"),
    (12, "INFO"),
    (16, "WARN"),
    (20, "ERROR"),
    (24, "CRITICAL"),
)
_LEVEL_BY_NUMBER: Final = {
    n: next(level for top, level in _LEVEL_BY_RANGE if n <= top) for n in range(1, 25)
}
#: Dynatrace's documented first-letter rule, for records that carry only a severity text.
_LEVEL_BY_PREFIX: Final = (
    ("emerg", "EMERGENCY"), ("f", "EMERGENCY"), ("e", "ERROR"), ("a", "ALERT"),
    ("c", "CRITICAL"), ("s", "SEVERE"), ("w", "WARN"), ("n", "NOTICE"), ("i", "INFO"),
    ("d", "DEBUG"), ("trace", "DEBUG"), ("verbose", "DEBUG"),
)
LEVEL_BY_SEVERITY: Final = {s: _LEVEL_BY_NUMBER.get(s.value) for s in SeverityNumber}
SPECIAL_KEYS: Final = frozenset({"content", "timestamp", "loglevel", "trace_id", "span_id"})
#: Attributes the mapper adds after the record's own: kept out of the attribute budget's reach.
RESERVED_ATTRIBUTES: Final = 4
INT_MIN: Final = JSON_INT_MIN
INT_MAX: Final = JSON_INT_MAX
_CACHE_SIZE: Final = 256
_KEY_CACHE_SIZE: Final = 4096


def loglevel_for(severity_number: int | None, severity_text: str | None) -> str | None:
    """The Dynatrace loglevel for an OTel severity; None leaves Dynatrace's default (NONE)."""
    if severity_number:
        return _LEVEL_BY_NUMBER.get(int(severity_number))
    if severity_text:
        lowered = severity_text.strip().lower()
        for prefix, level in _LEVEL_BY_PREFIX:
            if lowered.startswith(prefix):
                return level
    return None


@dataclass(frozen=True, slots=True)
class _Base:
    """A resource and scope, mapped once; kept alive so their ids cannot be reused."""

    resource: object
    scope: object
    attributes: JsonObject
    cuts: Counter[str]


class RecordMapper:
    """Maps records to Dynatrace objects; caches the flattened resource and scope per batch run.

    Not thread-safe: one mapper per exporter, used under the exporter's export lock.

    `enrichment` (Dynatrace's entity attributes, `dt_exporter._enrichment`) is merged under
    every record's resource attributes: the resource's own value wins a clash, and enrichment
    keys come after the resource's (a resource over the attribute budget loses them
    first). None or empty: no merge.
    """

    def __init__(
        self,
        limits: LimitProfile,
        truncations: Counter[str],
        enrichment: Mapping[str, Any] | None = None,
    ) -> None:
        self.limits = limits
        self.truncations = truncations
        self._enrichment = enrichment or None
        self._base_cache: dict[tuple[int, int], _Base] = {}
        self.known_keys: dict[object, str] = {}
        self._last_base = _Base(None, None, {}, Counter())
        # Fast-path thresholds: text shorter than these many characters cannot exceed the limit.
        self._value_chars = limits.max_value_bytes // 4
        self._key_chars = limits.max_key_bytes // 4
        self._content_chars = limits.max_content_bytes // 4

    @property
    def enrichment(self) -> Mapping[str, Any] | None:
        return self._enrichment

    @enrichment.setter
    def enrichment(self, value: Mapping[str, Any] | None) -> None:
        """Replace the enrichment (after a fork, say); cheap when it is the same object."""
        value = value or None
        if value is not self._enrichment:
            self._enrichment = value
            self._base_cache.clear()
            self._last_base = _Base(None, None, {}, Counter())

    def map_object(self, source: Mapping[str, Any]) -> JsonObject:
        """An already-Dynatrace-shaped object (a JSON log line): keys and values limited and
        nested maps flattened, as for a record's attributes; the special fields after them.

        The hot path of `dt-exporter send` on JSON lines: one pass, `_add_attributes`' cases
        inlined (the same rules, the same output, key order included)."""
        out: JsonObject = {}
        special: list[tuple[str, Any]] | None = None
        known = self.known_keys
        value_chars = self._value_chars
        for key, value in source.items():
            if key in SPECIAL_KEYS:
                if special is None:
                    special = []
                special.append((key, value))
                continue
            safe = known.get(key)
            if safe is None:
                safe = self._remember_key(key)
            kind = type(value)
            if kind is str:
                out[safe] = value if len(value) <= value_chars else self._text(value)
            elif kind is int:
                out[safe] = value if INT_MIN <= value <= INT_MAX else self._text(int_text(value))
            elif kind is bool or (kind is float and value - value == 0):  # finite float
                out[safe] = value
            else:
                self._flatten(out, safe, value, 1, ())
        budget = self.limits.max_attributes - RESERVED_ATTRIBUTES
        if len(out) > budget:
            extra = list(out)[budget:]
            for key in extra:
                del out[key]
            self.truncations["attributes"] += len(extra)
        if special is not None:
            for key, value in special:
                if key == "content":
                    out[key] = self._content(value)
                elif type(value) is str and len(value) <= value_chars:
                    out[key] = value  # what `_value` makes of it, without the calls
                elif key == "timestamp" and type(value) in (int, float):
                    out[key] = float_to_json(value) if type(value) is float else value
                else:
                    out[key] = self._value(value, ())
        return out

    def map(self, record: ReadableLogRecord) -> JsonObject:
        # The hot path of the JSON exporter: written for speed (locals, inlined common cases).
        lr = record.log_record
        last = self._last_base
        if last.resource is record.resource and last.scope is record.instrumentation_scope:
            base, base_cuts = last.attributes, last.cuts
        else:
            base, base_cuts = self.base(record.resource, record.instrumentation_scope)
        out = base.copy()
        if base_cuts:  # cuts in the shared resource part are counted for every record
            self.truncations.update(base_cuts)
        if lr.event_name:
            out["event.name"] = self._text(lr.event_name)
        attributes = lr.attributes
        if attributes is not None:
            # BoundedAttributes iterates through a lock per key; its plain dict is ~3x faster.
            plain = getattr(attributes, "_dict", attributes)
            if plain:
                self._add_attributes(out, plain)
        trace_id = lr.trace_id
        if trace_id:
            out["trace_id"] = trace_id.to_bytes(16, "big").hex()
            if lr.span_id:
                out["span_id"] = lr.span_id.to_bytes(8, "big").hex()
            out["dt.trace_sampled"] = bool(lr.trace_flags and lr.trace_flags & 0x01)
        body = lr.body
        if type(body) is str and len(body) <= self._content_chars:
            out["content"] = body
        else:
            out["content"] = self._content(body)
        ts = lr.timestamp or lr.observed_timestamp
        if ts:
            out["timestamp"] = ts // 1_000_000
        severity = lr.severity_number
        level = LEVEL_BY_SEVERITY.get(severity) if severity else None
        if level is None:
            level = loglevel_for(None, lr.severity_text)
        if level:
            out["loglevel"] = level
        return out

    # -- attributes -----------------------------------------------------------------------------

    def base(
        self, resource: Resource, scope: InstrumentationScope | None
    ) -> tuple[JsonObject, Counter[str]]:
        """The mapped resource and scope attributes, and the cuts they needed (cached)."""
        last = self._last_base
        if last.resource is resource and last.scope is scope:  # a batch nearly always shares
            return last.attributes, last.cuts
        key = (id(resource), id(scope))
        cached = self._base_cache.get(key)
        if cached is None or cached.resource is not resource or cached.scope is not scope:
            cached = self._build_base(resource, scope)
            if len(self._base_cache) >= _CACHE_SIZE:
                self._base_cache.clear()
            self._base_cache[key] = cached
        self._last_base = cached
        return cached.attributes, cached.cuts

    def _build_base(self, resource: Resource, scope: InstrumentationScope | None) -> _Base:
        counting, self.truncations = self.truncations, Counter()
        try:
            base: JsonObject = {}
            attributes: Mapping[str, Any] = resource.attributes
            enrichment = self._enrichment
            if enrichment:
                extra = {k: v for k, v in enrichment.items() if k not in attributes}
                if extra:
                    attributes = {**attributes, **extra}
            self._add_attributes(base, attributes)
            if scope is not None:
                base["otel.scope.name"] = self._text(scope.name)
                if scope.version:
                    base["otel.scope.version"] = self._text(scope.version)
            return _Base(resource, scope, base, self.truncations)
        finally:
            self.truncations = counting

    def _add_attributes(self, out: JsonObject, attributes: Mapping[str, Any]) -> None:
        budget = self.limits.max_attributes - RESERVED_ATTRIBUTES
        known = self.known_keys
        value_chars = self._value_chars
        for key, value in attributes.items():
            safe = known.get(key)
            if safe is None:
                safe = self._remember_key(key)
            kind = type(value)
            if kind is str:
                out[safe] = value if len(value) <= value_chars else self._text(value)
            elif kind is int:
                out[safe] = value if INT_MIN <= value <= INT_MAX else self._text(int_text(value))
            elif kind is bool or (kind is float and value - value == 0):  # finite float
                out[safe] = value
            else:
                self._flatten(out, safe, value, 1, ())
        if len(out) > budget:
            extra = list(out)[budget:]
            for key in extra:
                del out[key]
            self.truncations["attributes"] += len(extra)

    def _remember_key(self, key: object) -> str:
        """The safe form of a top-level key, cached: keys repeat from record to record."""
        safe = self._key(key)
        if len(self.known_keys) >= _KEY_CACHE_SIZE:
            self.known_keys.clear()
        if safe == key:  # a key that needed cutting is counted each time it is cut
            self.known_keys[key] = safe
        return safe

    def _key(self, key: object) -> str:
        text = key if isinstance(key, str) else describe(key)
        if text in SPECIAL_KEYS:
            text = "attr." + text
        if len(text) > self._key_chars and utf8_len(text) > self.limits.max_key_bytes:
            text = scrub(text).encode("utf-8")[: self.limits.max_key_bytes].decode(
                "utf-8", "ignore"
            )
            self.truncations["key"] += 1
        return text

    def _flatten(
        self, out: JsonObject, key: str, value: object, depth: int, path: tuple[int, ...]
    ) -> None:
        """Nested mappings become dotted keys; anything else one JSON-safe value."""
        if isinstance(value, Mapping):
            if id(value) in path:
                out[key] = CYCLIC
                self.truncations["cyclic"] += 1
                return
            if depth > self.limits.max_nesting_depth:
                out[key] = self._text(self.json_text(value))
                self.truncations["nesting"] += 1
                return
            inner = (*path, id(value))
            for sub_key, sub_value in value.items():
                self._flatten(out, self._key(f"{key}.{_key_text(sub_key)}"), sub_value,
                              depth + 1, inner)
            return
        out[key] = self._value(value, path)

    def _value(self, value: object, path: tuple[int, ...]) -> Any:
        """One attribute value: a JSON scalar, or a list of scalars (Dynatrace arrays)."""
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, int):
            return value if INT_MIN <= value <= INT_MAX else self._text(int_text(value))
        if isinstance(value, float):
            return float_to_json(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self._text(bytes_to_text(value))
        if isinstance(value, (list, tuple, Set)):
            if id(value) in path:
                self.truncations["cyclic"] += 1
                return CYCLIC
            items = sorted(map(describe, value)) if isinstance(value, Set) else list(value)
            limit = self.limits.max_values_per_attribute
            if len(items) > limit:
                items = items[:limit]
                self.truncations["array"] += 1
            inner = (*path, id(value))
            return [self._element(item, inner) for item in items]
        return self._text(scalar_text(value))

    def _element(self, item: object, path: tuple[int, ...]) -> Any:
        """Array elements are scalars; a nested container becomes its JSON text."""
        if isinstance(item, (Mapping, list, tuple, Set)):
            if id(item) in path:
                self.truncations["cyclic"] += 1
                return CYCLIC
            return self._text(self.json_text(item))
        return self._value(item, path)

    def _text(self, text: str) -> str:
        if len(text) <= self._value_chars:
            return text
        cut, truncated = truncate_utf8(text, self.limits.max_value_bytes)
        if truncated:
            self.truncations["value"] += 1
        return cut

    # -- content --------------------------------------------------------------------------------

    def _content(self, body: object) -> str:
        if isinstance(body, str):
            text = str.__str__(body)  # a str subclass (or str enum) is still its text
        elif body is None:
            return ""
        elif isinstance(body, (bytes, bytearray, memoryview)):
            text = bytes_to_text(body)
        else:
            text = self.json_text(body)
        if len(text) <= self._content_chars:
            return text
        cut, truncated = truncate_utf8(text, self.limits.max_content_bytes)
        if truncated:
            self.truncations["content"] += 1
        return cut

    def json_text(self, value: object) -> str:
        """Any value as compact JSON text by `text.json_tree`'s rules, never raising; a cut for
        depth counts as `nesting`, scrubbed lone surrogates as `invalid_unicode`."""
        tree, cut = json_tree(value)
        if cut:
            self.truncations["nesting"] += 1
        data, scrubbed = json_dumps(tree)
        if scrubbed:
            self.truncations["invalid_unicode"] += 1
        return data.decode()


def _key_text(key: object) -> str:
    return key if isinstance(key, str) else describe(key)
