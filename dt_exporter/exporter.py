"""`DynatraceLogExporter`: the OpenTelemetry log exporter, a front end of the channel.

`export()` batches (maps, limits, serialises, compresses) on the caller's thread (the SDK's batch
worker, never the application's), submits the finished bodies to its channel and returns. It
never raises.

Flush means delivered. The SDK's `BatchLogRecordProcessor.force_flush` (1.45) exports what it
holds on the calling thread and returns without calling the exporter's `force_flush`. Two
things make `LoggerProvider.force_flush()` wait for delivery anyway, through public behaviour:
- the first `export()` adds a small companion processor to the global SDK `LoggerProvider`
  (`add_log_record_processor`: "invoked in the same order they are registered", so after the
  batch processor) whose `force_flush` flushes this exporter within what is left of the
  provider's deadline;
- an `export()` that runs inside a `force_flush` on the application's thread (the first flush,
  before the companion is in place) waits for its records, within that flush's timeout.
When the SDK starts calling `exporter.force_flush` itself, both become harmless repeats.

Shutdown never takes longer than `DT_EXPORTER_SHUTDOWN_TIMEOUT` (default 5 s): the SDK passes
its own 30 s; the smaller wins.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from types import FrameType
from typing import Any, Final

from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from dt_exporter import _enrichment, _forks, _routes, _selflog
from dt_exporter._batching import OWN_SCOPE_PREFIX, LogBatcher
from dt_exporter._channel import Channel, ShutdownReport
from dt_exporter._payload import Batch
from dt_exporter._spool import Spool
from dt_exporter._stats import Accounting, DeliveryStats
from dt_exporter.config import ExporterConfig
from dt_exporter.errors import ConfigError

_log = logging.getLogger(__name__)
_SUCCESS = LogRecordExportResult.SUCCESS
_FAILURE = LogRecordExportResult.FAILURE
#: The SDK's batch worker threads are named `OtelBatch{LogRecord,Span}RecordProcessor`.
_SDK_WORKER_PREFIX: Final = "OtelBatch"
#: How far up the stack a `force_flush` of the SDK may be (processor → BatchProcessor._export).
_FLUSH_FRAME_DEPTH: Final = 8
_DEFAULT_FLUSH_S: Final = 30.0  # the SDK's own default for force_flush
__all__ = ["OWN_SCOPE_PREFIX", "DynatraceLogExporter", "exporters"]

#: Every exporter created in this process and not yet collected: `dt_exporter.exporters()`.
_LIVE: weakref.WeakSet[DynatraceLogExporter] = weakref.WeakSet()


def exporters() -> list[DynatraceLogExporter]:
    """The log exporters alive in this process, oldest first: how a zero-code application
    (`OTEL_LOGS_EXPORTER=dynatrace`) reaches `stats()` without holding the exporter."""
    return sorted(_LIVE, key=lambda exporter: exporter._created)


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
        self._enriched = False
        self._created = time.monotonic_ns()
        self._companion_added = False
        _LIVE.add(self)
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
        enrichment = _enrichment.attributes_or_none(strict=bool(settings))
        self._enriched = enrichment is not None  # a forked worker re-reads its own
        self._batcher = LogBatcher(cfg, route.name, enrichment)
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
        """A lock held by a parent thread at fork time would never be released here; a forked
        worker is another process: its own process entity (re-read only if the files changed)."""
        self._shutdown_lock = threading.Lock()
        if self._channel is not None and self._enriched:
            self._batcher.set_enrichment(_enrichment.attributes() or None)

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
        _selflog.install()  # OpenTelemetry's logging handler may have come after us
        if not self._companion_added:
            self._companion_added = True
            _add_flush_companion(self)
        self._channel.submit(self._batcher.records(batch, time.time_ns()))
        flush_s = _enclosing_flush_timeout()
        if flush_s is not None:  # the SDK flushes on this thread: flush means delivered
            self._channel.flush(flush_s)
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
        timeout_s = self._config.shutdown_timeout_s
        if timeout_millis is not None:  # the SDK passes its own 30 s: the smaller wins
            timeout_s = min(timeout_s, max(timeout_millis, 0) / 1000)
        report = self._channel.shutdown(timeout_s)
        if report.undelivered:
            _log.warning("dt_exporter shut down with %d records undelivered (%s)",
                         report.undelivered, report.describe())
        dropped = self._channel.stats().dropped
        if dropped:
            _log.warning("dt_exporter: %d records dropped: %s", sum(dropped.values()),
                         ", ".join(f"{reason} {n}" for reason, n in sorted(dropped.items())))

    def _follow_flushes_of(self, provider: Any) -> None:
        """Put the flush companion after the processors `provider` has now (setup_dynatrace
        does this for the provider it builds; otherwise the first export() does it for the
        global provider)."""
        self._companion_added = True
        provider.add_log_record_processor(_FlushCompanion(self))

    @property
    def last_shutdown(self) -> ShutdownReport | None:
        return None if self._channel is None else self._channel.last_shutdown

    def __repr__(self) -> str:
        target = self._config.endpoint.base_url if self._config else "disabled"
        return f"DynatraceLogExporter({target!r})"


class _FlushCompanion(LogRecordProcessor):
    """A log record processor that only flushes: after the SDK's batch processor has exported
    what it held, this waits until the exporter has delivered it (see the module docstring)."""

    def __init__(self, exporter: DynatraceLogExporter) -> None:
        self._exporter = weakref.ref(exporter)

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        exporter = self._exporter()
        return True if exporter is None else exporter.force_flush(timeout_millis)


def _add_flush_companion(exporter: DynatraceLogExporter) -> None:
    """Put a `_FlushCompanion` after the processors of the global SDK LoggerProvider, once."""
    try:
        from opentelemetry._logs import get_logger_provider
        from opentelemetry.sdk._logs import LoggerProvider

        provider = get_logger_provider()
        if isinstance(provider, LoggerProvider):
            provider.add_log_record_processor(_FlushCompanion(exporter))
    except Exception:  # an SDK that changed shape: flush keeps its old meaning
        _log.debug("dt_exporter: could not add the flush companion", exc_info=True)


def _enclosing_flush_timeout() -> float | None:
    """Seconds a `force_flush` of the OpenTelemetry SDK up the stack allows, when this export
    runs inside one on a thread that is not the SDK's batch worker; None otherwise."""
    if threading.current_thread().name.startswith(_SDK_WORKER_PREFIX):
        return None
    frame: FrameType | None = sys._getframe(2)
    for _ in range(_FLUSH_FRAME_DEPTH):
        if frame is None:
            return None
        if frame.f_code.co_name == "force_flush" and frame.f_globals.get(
                "__name__", "").startswith("opentelemetry.sdk"):
            timeout_ms = frame.f_locals.get("timeout_millis")
            if isinstance(timeout_ms, (int, float)):
                return max(float(timeout_ms), 0.0) / 1000
            return _DEFAULT_FLUSH_S
        frame = frame.f_back
    return None
