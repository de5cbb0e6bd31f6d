"""`DynatraceLogExporter`: the OpenTelemetry log exporter. Wires mapping, payload and delivery.

`export()` maps, limits, serialises and compresses on the caller's thread (the SDK's batch
worker, never the application's), queues the finished bodies and returns. It never raises.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from dt_exporter import payload, responses
from dt_exporter.config import ExporterConfig
from dt_exporter.delivery import Route, Sender, register_fork_hook
from dt_exporter.errors import ConfigError
from dt_exporter.limits import MAX_RECORD_AGE_NS, STALE_MARGIN_NS
from dt_exporter.mapping import RecordMapper
from dt_exporter.payload import Body, Encoding
from dt_exporter.spool import Spool
from dt_exporter.stats import Accounting, DeliveryStats

_log = logging.getLogger(__name__)
#: Log records from these instrumentation scopes are our own; shipping them would loop.
OWN_SCOPE_PREFIX: Final = "dt_exporter"
_SUCCESS = LogRecordExportResult.SUCCESS
_FAILURE = LogRecordExportResult.FAILURE


class DynatraceLogExporter(LogRecordExporter):
    """Sends OpenTelemetry log records to Dynatrace (JSON log ingest, or OTLP with
    `protocol="otlp"`).

    `DynatraceLogExporter()` configures itself from the environment; keyword arguments (the
    setting names of `ExporterConfig`) override it. Bad configuration raises `ConfigError` when
    you pass arguments; constructed with none (as `OTEL_LOGS_EXPORTER=dynatrace` does), it logs
    one error and becomes a no-op that counts every record as dropped (`misconfigured`), so the
    rest of the application's OpenTelemetry setup keeps working.
    """

    def __init__(self, *, config: ExporterConfig | None = None, **settings: Any) -> None:
        self._accounting = Accounting()
        self._export_lock = threading.Lock()
        register_fork_hook(self)
        self._shut_down = False
        self._sender: Sender | None = None
        self.config_error: ConfigError | None = None
        try:
            self._config: ExporterConfig | None = config or ExporterConfig.from_env(**settings)
        except ConfigError as exc:
            if settings:
                raise
            _log.error("dt_exporter is disabled, every log record will be dropped: %s", exc)
            self.config_error, self._config = exc, None
            return
        cfg = self._config
        self._truncations: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._mapper = RecordMapper(cfg.limits, self._truncations)
        self._encoding: Encoding = "gzip" if cfg.compression == "gzip" else "identity"
        self._route = logs_route(cfg)
        self._sender = Sender.for_config(
            cfg, self._route, self._accounting,
            spool=Spool(cfg.spool_dir, cfg.spool_max_bytes) if cfg.spool_dir else None,
        )

    def after_fork_in_child(self) -> None:
        """A lock held by a parent thread at fork time would never be released here."""
        self._export_lock = threading.Lock()

    @property
    def config(self) -> ExporterConfig | None:
        return self._config

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        try:
            return self._export(batch)
        except Exception:  # never into the application
            _log.exception("dt_exporter: unexpected error in export(); batch dropped")
            return _FAILURE

    def _export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        count = len(batch)
        if self._sender is None or self._config is None:
            self._accounting.receive(count)
            self._accounting.drop("misconfigured", count)
            return _FAILURE
        with self._export_lock:
            self._accounting.receive(count)
            if self._shut_down:
                self._accounting.drop("already_shutdown", count)
                return _FAILURE
            try:
                bodies = self._encode(batch)
            except Exception:
                _log.exception("dt_exporter: could not encode a batch; %d records dropped", count)
                self._dropped["unmappable"] += count
                bodies = []
            finally:
                self._accounting.merge(self._dropped, self._truncations)
                self._dropped.clear()
                self._truncations.clear()
            for body in bodies:
                self._sender.submit(body)
        return _SUCCESS

    def _encode(self, batch: Sequence[ReadableLogRecord]) -> list[Body]:
        assert self._config is not None
        cfg = self._config
        cutoff = time.time_ns() - (MAX_RECORD_AGE_NS - STALE_MARGIN_NS)
        keep: list[ReadableLogRecord] = []
        oldest = 0
        for record in batch:
            lr = record.log_record
            ts = lr.timestamp or lr.observed_timestamp or 0
            if ts and ts < cutoff:
                self._dropped["too_old"] += 1
                continue
            scope = record.instrumentation_scope
            if scope is not None and scope.name.startswith(OWN_SCOPE_PREFIX):
                self._dropped["self_log"] += 1
                continue
            keep.append(record)
            if ts and (not oldest or ts < oldest):
                oldest = ts
        if cfg.protocol == "otlp":
            from dt_exporter import otlp

            requests = [
                (r.data, r.records)
                for r in otlp.encode_log_requests(
                    keep, cfg.limits, max_request_bytes=cfg.max_request_bytes,
                    max_records=cfg.max_records_per_request,
                    truncations=self._truncations, dropped=self._dropped,
                )
            ]
        else:
            objects = []
            for record in keep:
                try:
                    objects.append(self._mapper.map(record))
                except Exception:
                    self._dropped["unmappable"] += 1
            requests = payload.json_arrays(
                objects, max_bytes=cfg.max_request_bytes, max_records=cfg.max_records_per_request,
                truncations=self._truncations, dropped=self._dropped,
            )
        return [
            Body(self._route.name, payload.compress(data, self._encoding, cfg.gzip_level),
                 records, self._encoding, oldest)
            for data, records in requests
        ]

    def stats(self) -> DeliveryStats:
        """A consistent snapshot: received = delivered + dropped + queued + in flight."""
        if self._sender is None:
            return self._accounting.snapshot(0, 0)
        spool_bytes = self._sender.spool_bytes  # disk I/O: outside the locks
        with self._export_lock, self._sender.transition:
            records, size = self._sender.queue.depth
            oldest = self._sender.queue.oldest_ns
            age_s = max(time.time_ns() - oldest, 0) / 1e9 if oldest else 0.0
            return self._accounting.snapshot(records, size, age_s, spool_bytes)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Wait until every queued record is delivered or dropped; False if time ran out."""
        if self._sender is None:
            return True
        return self._sender.flush(timeout_millis / 1000)

    def shutdown(self, timeout_millis: int | None = None) -> None:
        """Stop accepting records, drain the queue within the deadline, then stop the sender.

        The SDK's batch processor passes the time it has left; otherwise
        `DT_EXPORTER_SHUTDOWN_TIMEOUT` applies. Records still queued then count as `shutdown`.
        """
        with self._export_lock:
            if self._shut_down:
                return
            self._shut_down = True
        if self._sender is None or self._config is None:
            return
        timeout_s = (self._config.shutdown_timeout_s if timeout_millis is None
                     else timeout_millis / 1000)
        if not self._sender.shutdown(timeout_s):
            left = self.stats()
            _log.warning("dt_exporter shut down with %d records undelivered",
                         left.dropped.get("shutdown", 0) + left.in_flight)

    def __repr__(self) -> str:
        target = self._config.endpoint.base_url if self._config else "disabled"
        return f"DynatraceLogExporter({target!r})"


def logs_route(cfg: ExporterConfig) -> Route:
    if cfg.protocol == "otlp":
        from dt_exporter import otlp

        return Route(
            name="otlp", url=cfg.logs_url, content_type="application/x-protobuf",
            scope="logs.ingest", split=otlp.split_request, count=otlp.count_records,
            read_rejections=lambda status, body: otlp.parse_partial_success(body),
            authorization=cfg.authorization,
        )
    return Route(
        name="logs", url=cfg.logs_url, content_type="application/json; charset=utf-8",
        scope="logs.ingest", split=payload.split_json_array, count=payload.count_json_array,
        read_rejections=responses.logs_json_rejections, authorization=cfg.authorization,
    )
