"""`SpanEventBridge`: span events become OpenTelemetry log records, correlated to their span.

On span end, each event of the span is emitted through a `LoggerProvider` (the global one by
default), so it flows through whichever log exporter is configured. A record keeps the event's
timestamp and attributes, the span's trace id, span id and flags, and names its span in
`span.name`.

- Exception events (`exception.type`, `exception.message`, `exception.stacktrace`,
  `exception.escaped`, as `Span.record_exception` writes them) become ERROR records whose body
  is the exception message (or its type when the message is empty).
- Other events become records at the configured level (INFO by default) whose body is the
  event name.

Duplicates: an exception that was also logged through the same LoggerProvider while the span was
current (stdlib `logger.exception(...)` with OTel's logging handler) is not emitted again. The
rule: same span id and the same exception class name (the last dotted part of `exception.type`,
since span events qualify it with the module and the logging handler does not). The bridge
learns what was logged from a small processor it adds to the LoggerProvider.

The bridge never raises in `on_end` and does no I/O: emitting only hands a record to the
provider's processors (the batch processor queues it).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Final

from opentelemetry import trace
from opentelemetry._logs import Logger, LoggerProvider, SeverityNumber, get_logger_provider
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import NonRecordingSpan

from dt_exporter._version import __version__
from dt_exporter.config import BridgeConfig

#: Not under "dt_exporter": the exporter drops its own scopes' records, and these are the user's.
SCOPE_NAME: Final = "dynatrace.span_events"
_SEVERITY: Final = {
    "DEBUG": SeverityNumber.DEBUG,
    "INFO": SeverityNumber.INFO,
    "WARN": SeverityNumber.WARN,
    "ERROR": SeverityNumber.ERROR,
}
_REMEMBERED: Final = 4096
_log = logging.getLogger(__name__)


def _short_type(exception_type: object) -> str:
    return str(exception_type).rsplit(".", 1)[-1]


class _LoggedExceptions(LogRecordProcessor):
    """Remembers (span id, exception class) of exceptions logged through the provider."""

    def __init__(self) -> None:
        self._seen: OrderedDict[tuple[int, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        record = log_record.log_record
        attributes = record.attributes
        if not record.span_id or not attributes or "exception.type" not in attributes:
            return
        if log_record.instrumentation_scope is not None and (
            log_record.instrumentation_scope.name == SCOPE_NAME
        ):
            return
        key = (record.span_id, _short_type(attributes["exception.type"]))
        with self._lock:
            self._seen[key] = None
            if len(self._seen) > _REMEMBERED:
                self._seen.popitem(last=False)

    def was_logged(self, span_id: int, exception_type: object) -> bool:
        with self._lock:
            return (span_id, _short_type(exception_type)) in self._seen

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class SpanEventBridge(SpanProcessor):
    """A SpanProcessor that re-emits span events as log records. See the module docstring."""

    def __init__(
        self,
        logger_provider: LoggerProvider | None = None,
        *,
        config: BridgeConfig | None = None,
        **settings: Any,
    ) -> None:
        self.config = config or BridgeConfig.from_env(**settings)
        self._provider = logger_provider
        self._logger: Logger | None = None
        self._logged = _LoggedExceptions()
        self._watching: LoggerProvider | None = None
        self._level = _SEVERITY[self.config.level]
        self.enabled = True

    def _get_logger(self) -> Logger:
        provider = self._provider or get_logger_provider()
        if self._logger is None or provider is not self._watching:
            add = getattr(provider, "add_log_record_processor", None)
            if callable(add):
                add(self._logged)
            self._watching = provider
            self._logger = provider.get_logger(SCOPE_NAME, __version__)
        return self._logger

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        # Start watching the provider before the span's code can log an exception.
        if self.enabled and self._logger is None:
            try:
                self._get_logger()
            except Exception:
                _log.exception("dt_exporter span-event bridge could not reach a LoggerProvider")

    def on_end(self, span: ReadableSpan) -> None:
        if not self.enabled or not span.events:
            return
        try:
            self._emit_events(span)
        except Exception:  # a bug here must never reach the application's thread
            _log.exception("dt_exporter span-event bridge failed for span %r", span.name)

    def _emit_events(self, span: ReadableSpan) -> None:
        span_context = span.get_span_context()
        if span_context is None:
            return
        logger = self._get_logger()
        context = trace.set_span_in_context(NonRecordingSpan(span_context))
        for event in span.events:
            if not self.config.wants(event.name):
                continue
            attributes: dict[str, Any] = dict(event.attributes or {})
            attributes["span.name"] = span.name
            if event.name == "exception":
                if self._logged.was_logged(span_context.span_id,
                                           attributes.get("exception.type", "")):
                    continue
                severity, body = SeverityNumber.ERROR, _exception_body(attributes)
            else:
                severity, body = self._level, event.name
            logger.emit(
                timestamp=event.timestamp,
                context=context,
                severity_number=severity,
                severity_text=severity.name,
                body=body,
                attributes=attributes,
                event_name=event.name,
            )

    def shutdown(self) -> None:
        self.enabled = False

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _exception_body(attributes: Mapping[str, Any]) -> str:
    message = attributes.get("exception.message")
    if message:
        return str(message)
    return str(attributes.get("exception.type", "exception"))
