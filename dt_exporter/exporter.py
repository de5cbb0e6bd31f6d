"""`DynatraceLogExporter`: the OpenTelemetry log exporter. Wires mapping, payload and delivery.

`export()` maps, limits, serialises and compresses on the caller's thread (the SDK's batch
worker, never the application's), queues the finished bodies and returns. It never raises.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from dt_exporter import _forks, _routes
from dt_exporter._batching import OWN_SCOPE_PREFIX, LogBatcher
from dt_exporter._channel import Channel, ShutdownReport
from dt_exporter.config import ExporterConfig
from dt_exporter.errors import ConfigError
from dt_exporter.payload import Batch
from dt_exporter.spool import Spool
from dt_exporter.stats import Accounting, DeliveryStats

_log = logging.getLogger(__name__)
_SUCCESS = LogRecordExportResult.SUCCESS
_FAILURE = LogRecordExportResult.FAILURE
__all__ = ["OWN_SCOPE_PREFIX", "DynatraceLogExporter"]


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
        self._misconfigured = Accounting()
        self._shut_down = False
        self._shutdown_lock = threading.Lock()
        _forks.register(self)
        self._channel: Channel | None = None
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
        route = _routes.logs(cfg)
        self._batcher = LogBatcher(cfg, route.name)
        self._channel = Channel.for_config(cfg, [route],
                                           spool=self._open_spool(cfg, strict=bool(settings)))

    @staticmethod
    def _open_spool(cfg: ExporterConfig, *, strict: bool) -> Spool | None:
        """The disk spool, if configured. A directory that cannot be used safely raises when
        the caller chose it by argument; from the environment (zero-code) the exporter logs
        it and delivers from memory only, so the application's telemetry setup still works."""
        if not cfg.spool_dir:
            return None
        try:
            return Spool(cfg.spool_dir, cfg.spool_max_bytes)
        except ConfigError as exc:
            if strict:
                raise
            _log.error("dt_exporter: disk spool disabled, delivering from memory only: %s", exc)
            return None

    def after_fork_in_child(self) -> None:
        """A lock held by a parent thread at fork time would never be released here."""
        self._shutdown_lock = threading.Lock()

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
        if self._channel is None:
            self._misconfigured.receive(len(batch))
            self._misconfigured.drop("misconfigured", len(batch))
            return _FAILURE
        if self._shut_down:
            self._channel.submit(Batch.refused(len(batch), "already_shutdown"))
            return _FAILURE
        self._channel.submit(self._batcher.records(batch, time.time_ns()))
        return _SUCCESS

    def stats(self) -> DeliveryStats:
        """A consistent snapshot: received = delivered + dropped + queued + in flight."""
        if self._channel is None:
            return self._misconfigured.snapshot(0, 0)
        return self._channel.stats()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Wait until every queued record is delivered or dropped; False if time ran out."""
        if self._channel is None:
            return True
        return self._channel.flush(timeout_millis / 1000)

    def shutdown(self, timeout_millis: int | None = None) -> None:
        """Stop accepting records, drain the queue within the deadline, then stop the sender.

        The SDK's batch processor passes the time it has left; otherwise
        `DT_EXPORTER_SHUTDOWN_TIMEOUT` applies. Records still queued then count as `shutdown`
        (or `left_in_spool` when the disk spool keeps them for the next process).
        """
        with self._shutdown_lock:
            if self._shut_down:
                return
            self._shut_down = True
        if self._channel is None or self._config is None:
            return
        timeout_s = (self._config.shutdown_timeout_s if timeout_millis is None
                     else timeout_millis / 1000)
        report = self._channel.shutdown(timeout_s)
        if report.undelivered:
            _log.warning("dt_exporter shut down with %d records undelivered (%s)",
                         report.undelivered, report.describe())

    @property
    def last_shutdown(self) -> ShutdownReport | None:
        return None if self._channel is None else self._channel.last_shutdown

    def __repr__(self) -> str:
        target = self._config.endpoint.base_url if self._config else "disabled"
        return f"DynatraceLogExporter({target!r})"
