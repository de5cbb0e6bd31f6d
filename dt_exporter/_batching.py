"""The one batcher: log records, or parsed lines, become finished request bodies, as values.

`LogBatcher.records(batch)` (the log exporter) and `LogBatcher.lines(chunk)` (`dt-exporter
send`) return an `Encoded` value: the uncompressed request bodies within the configured byte
and record limits, what was dropped before any request (by reason: `too_old`, `self_log`,
`unmappable`, `invalid_json`, `record_too_large`, ...) and what was cut to fit (`truncated`).
`finish()` compresses it into the `payload.Batch` the channel takes; it may run on another
thread (zlib releases the GIL), which is how `send` uses the second core.

Records older than Dynatrace's 24 h window (less a margin for clock skew) are dropped here and
counted; the channel drops those that cross the window while they wait.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from opentelemetry.sdk._logs import ReadableLogRecord

from dt_exporter import _payload as payload
from dt_exporter._payload import Batch, Body, Encoding
from dt_exporter._timestamps import MICROS_MAX
from dt_exporter.config import ExporterConfig
from dt_exporter.limits import MAX_RECORD_AGE_NS, STALE_MARGIN_NS
from dt_exporter.lines import Chunk, parse_timestamp, timestamp_ms
from dt_exporter.mapping import JsonObject, RecordMapper

#: Log records from these instrumentation scopes are our own; shipping them would loop.
OWN_SCOPE_PREFIX: Final = "dt_exporter"
_CUTOFF_NS: Final = MAX_RECORD_AGE_NS - STALE_MARGIN_NS


@dataclass(frozen=True, slots=True)
class Encoded:
    """Uncompressed request bodies `(data, records)` and what became of the other records."""

    received: int
    requests: Sequence[tuple[bytes, int]]
    oldest_ns: int = 0
    dropped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    truncated: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


class LogBatcher:
    """Encodes log records for one log route (`logs` JSON or `otlp`), per `config`."""

    def __init__(self, config: ExporterConfig, route_name: str,
                 enrichment: Mapping[str, Any] | None = None) -> None:
        """`enrichment`: Dynatrace entity attributes merged under every record's resource
        (the record's own attributes win a clash)."""
        self._config = config
        self._route_name = route_name
        self._enrichment = enrichment
        self._encoding: Encoding = "gzip" if config.compression == "gzip" else "identity"
        self._lock = threading.Lock()  # the mapper's truncation counter is per call
        self._truncations: Counter[str] = Counter()
        self._mapper = RecordMapper(config.limits, self._truncations, enrichment)
        # Text shorter than this many characters cannot exceed the content limit.
        self._content_chars = config.limits.max_content_bytes // 4

    def set_enrichment(self, enrichment: Mapping[str, Any] | None) -> None:
        """New enrichment attributes (a forked worker's own process entity)."""
        self._lock = threading.Lock()  # called in a forked child: a parent may have held it
        self._enrichment = enrichment
        self._mapper.enrichment = enrichment

    def finish(self, encoded: Encoded) -> Batch:
        """Compress the request bodies into a `Batch` for the channel."""
        cfg = self._config
        bodies = [
            Body(self._route_name, payload.compress(data, self._encoding, cfg.gzip_level),
                 records, self._encoding, encoded.oldest_ns, raw_size=len(data))
            for data, records in encoded.requests
        ]
        return Batch(encoded.received, bodies, encoded.dropped, encoded.truncated)

    def records(self, batch: Sequence[ReadableLogRecord], now_ns: int) -> Batch:
        """OpenTelemetry log records as a finished `Batch`."""
        return self.finish(self.encode_records(batch, now_ns))

    def encode_records(self, batch: Sequence[ReadableLogRecord], now_ns: int) -> Encoded:
        cutoff = now_ns - _CUTOFF_NS
        dropped: Counter[str] = Counter()
        keep: list[ReadableLogRecord] = []
        oldest = 0
        for record in batch:
            lr = record.log_record
            ts = lr.timestamp or lr.observed_timestamp or 0
            if ts and ts < cutoff:
                dropped["too_old"] += 1
                continue
            scope = record.instrumentation_scope
            if scope is not None and scope.name.startswith(OWN_SCOPE_PREFIX):
                dropped["self_log"] += 1
                continue
            keep.append(record)
            if ts and (not oldest or ts < oldest):
                oldest = ts
        with self._lock:
            try:
                requests, lost = self._encode(keep)
            except Exception:  # a bug costs this batch, counted, never the caller
                requests, lost = [], Counter({"unmappable": len(keep)})
            dropped.update(lost)
            truncated = Counter(self._truncations)
            self._truncations.clear()
        return Encoded(len(batch), requests, oldest, dropped, truncated)

    def _encode(self, keep: list[ReadableLogRecord]) -> tuple[list[tuple[bytes, int]],
                                                              Counter[str]]:
        """Under the lock: the request bodies of `keep`, and the records it had to leave out."""
        cfg = self._config
        dropped: Counter[str] = Counter()
        if self._route_name == "otlp":
            from dt_exporter import _otlp as otlp

            requests = [
                (r.data, r.records)
                for r in otlp.encode_log_requests(
                    keep, cfg.limits, max_request_bytes=cfg.max_request_bytes,
                    max_records=cfg.max_records_per_request,
                    truncations=self._truncations, dropped=dropped,
                    enrichment=self._enrichment,
                )
            ]
            return requests, dropped
        objects: list[JsonObject] = []
        for record in keep:
            try:
                objects.append(self._mapper.map(record))
            except Exception:  # never crash on one odd record; count it
                dropped["unmappable"] += 1
        requests = payload.json_arrays(
            objects, max_bytes=cfg.max_request_bytes, max_records=cfg.max_records_per_request,
            truncations=self._truncations, dropped=dropped,
        )
        return requests, dropped

    def objects(self, objects: Sequence[JsonObject], received: int, oldest_ns: int = 0,
                dropped: Mapping[str, int] | None = None,
                truncated: Mapping[str, int] | None = None) -> Encoded:
        """Log objects already mapped by the caller (`DynatraceHandler` maps stdlib records
        with its own `RecordMapper`) as JSON bodies within the byte and record limits.

        `received` records became `objects`; `dropped` and `truncated` are what the caller's
        mapping left out or cut, carried into the result with what serialising adds (an
        object alone over `max_request_bytes`: `record_too_large`; scrubbed lone surrogates:
        `invalid_unicode`). JSON route only.
        """
        if self._route_name != "logs":
            raise ValueError(f"LogBatcher.objects needs the JSON route, not {self._route_name!r}")
        lost: Counter[str] = Counter(dropped or {})
        cfg = self._config
        with self._lock:
            requests = payload.json_arrays(
                objects, max_bytes=cfg.max_request_bytes,
                max_records=cfg.max_records_per_request,
                truncations=self._truncations, dropped=lost,
            )
            cut: Counter[str] = Counter(truncated or {})
            cut.update(self._truncations)
            self._truncations.clear()
        return Encoded(received, requests, oldest_ns, lost, cut)

    def lines(self, chunk: Chunk, now_ns: int) -> Encoded:
        """A chunk of `dt-exporter send` input (text lines and JSON objects) as JSON bodies."""
        cutoff_ms = (now_ns - _CUTOFF_NS) // 1_000_000
        dropped: Counter[str] = Counter()
        objects: list[JsonObject] = []
        append = objects.append
        oldest_ms = 0
        content_chars = self._content_chars
        with self._lock:
            map_object = self._mapper.map_object
            for item in chunk.items:
                if type(item) is str:  # the fast path: a text line
                    append({"content": item} if len(item) <= content_chars
                           else map_object({"content": item}))
                    continue
                assert isinstance(item, dict)
                try:
                    mapped = map_object(item)
                except Exception:  # never crash on one odd record; count it
                    dropped["unmappable"] += 1
                    continue
                # `timestamp_ms`, its first (and usual) key without the call
                raw = mapped.get("timestamp")
                ts = parse_timestamp(raw) if raw is not None else timestamp_ms(mapped)
                if ts is not None:
                    if type(raw) is int and raw > MICROS_MAX:
                        # epoch ns: Dynatrace reads s, ms and µs only (it would stamp the
                        # record with the ingest time); send the moment it means, in ms
                        mapped["timestamp"] = ts
                    if ts < cutoff_ms:
                        dropped["too_old"] += 1
                        continue
                    if not oldest_ms or ts < oldest_ms:
                        oldest_ms = ts
                append(mapped)
            if chunk.invalid:
                dropped["invalid_json"] += chunk.invalid
            cfg = self._config
            requests = payload.json_arrays(
                objects, max_bytes=cfg.max_request_bytes,
                max_records=cfg.max_records_per_request,
                truncations=self._truncations, dropped=dropped,
            )
            truncated = Counter(self._truncations)
            self._truncations.clear()
        return Encoded(chunk.records, requests, oldest_ms * 1_000_000, dropped, truncated)

