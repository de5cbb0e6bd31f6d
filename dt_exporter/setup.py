"""One call to wire OpenTelemetry to Dynatrace by hand, for SDK setup code.

    handles = setup_dynatrace(service_name="checkout")
    ...
    handles.shutdown()

Creates a LoggerProvider with a BatchLogRecordProcessor around `DynatraceLogExporter`, a
TracerProvider carrying the `SpanEventBridge`, and (optionally) a stdlib logging handler on the
root logger: OpenTelemetry's, or with `fast_handler=True` a `DynatraceHandler` (stdlib records
straight to Dynatrace's JSON log ingest, no SDK log record in between; docs/handler.md). The
resource gets Dynatrace's enrichment files merged under it (see `dt_exporter._enrichment`; off
with `DT_EXPORTER_ENRICHMENT=false`). Unlike
`DynatraceLogExporter()`, bad configuration raises `ConfigError` here: setup code is the place
to fail loudly.

Once per process: OpenTelemetry's global providers can be set only once, and a second root
handler would send every record twice. So while a global setup (`set_global=True`, the default)
is active, another `setup_dynatrace(set_global=True)` builds nothing: it returns the active
setup, unchanged, with a `RuntimeWarning` (call its `shutdown()` first to set up anew; a forked
worker keeps its parent's setup, whose exporter restarts itself after fork). When OpenTelemetry's
globals were already set by someone else (`opentelemetry-instrument`, your own code, or a setup
since shut down), they stay as they are: the SDK's "Overriding of current ..." warnings are held
back (they would otherwise be logged through the new root handler to Dynatrace) and one
`RuntimeWarning` says that this setup's providers are not the global ones. `set_global=False`
setups are independent of all this.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import _logs, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from dt_exporter import _enrichment
from dt_exporter.bridge import SpanEventBridge
from dt_exporter.config import ExporterConfig, enrichment_enabled
from dt_exporter.exporter import DynatraceLogExporter
from dt_exporter.handler import DynatraceHandler


@dataclass(frozen=True, slots=True)
class DynatraceSetup:
    """What `setup_dynatrace` built; `shutdown()` flushes and stops all of it."""

    logger_provider: LoggerProvider
    tracer_provider: TracerProvider
    exporter: DynatraceLogExporter
    bridge: SpanEventBridge | None
    handler: logging.Handler | None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver everything logged so far (span events included) within the timeout; True
        when it all went. Call it at the end of a serverless handler, before the freeze."""
        deadline = time.monotonic() + max(timeout_millis, 0) / 1000
        traces = self.tracer_provider.force_flush(timeout_millis)  # the bridge's records first
        left = max(int((deadline - time.monotonic()) * 1000), 0)
        logs = self.logger_provider.force_flush(left)
        if isinstance(self.handler, DynatraceHandler):
            logs = self.handler.flush(max(deadline - time.monotonic(), 0.0)) and logs
        return logs and traces

    def shutdown(self) -> None:
        global _global_setup
        with _global_lock:
            if _global_setup is self:
                _global_setup = None
        if self.handler is not None:
            logging.getLogger().removeHandler(self.handler)
            if isinstance(self.handler, DynatraceHandler):
                self.handler.close()
        self.tracer_provider.shutdown()  # ends the bridge first: its records go out below
        self.logger_provider.shutdown()


def setup_dynatrace(
    service_name: str | None = None,
    *,
    resource: Resource | None = None,
    span_events: bool = True,
    logging_handler: bool = True,
    logging_level: int = logging.NOTSET,
    set_global: bool = True,
    fast_handler: bool = False,
    **exporter_settings: Any,
) -> DynatraceSetup:
    """Wire providers, exporter, bridge and logging handler; see the module docstring."""
    if not set_global:
        return _build(service_name, resource, span_events, logging_handler, logging_level,
                      False, exporter_settings, fast_handler)
    global _global_setup
    with _global_lock:
        if _global_setup is not None:
            warnings.warn(
                "setup_dynatrace() is already set up in this process: returning that setup "
                "unchanged, these arguments are not used (call its shutdown() first to set up "
                "anew)", RuntimeWarning, stacklevel=2,
            )
            return _global_setup
        _global_setup = _build(service_name, resource, span_events, logging_handler,
                               logging_level, True, exporter_settings, fast_handler)
        return _global_setup


_global_lock = threading.Lock()
_global_setup: DynatraceSetup | None = None  # the active set_global=True setup
#: The loggers OpenTelemetry warns on when a global provider is set a second time.
_OVERRIDE_LOGGERS = ("opentelemetry._logs._internal", "opentelemetry.trace")


def _build(
    service_name: str | None, resource: Resource | None, span_events: bool,
    logging_handler: bool, logging_level: int, set_global: bool, exporter_settings: dict[str, Any],
    fast_handler: bool = False,
) -> DynatraceSetup:
    config = ExporterConfig.from_env(**exporter_settings)  # raises ConfigError, loudly
    attributes = {"service.name": service_name} if service_name else {}
    resource = (resource or Resource.create()).merge(Resource.create(attributes))
    if enrichment_enabled():  # raises ConfigError on a bad DT_EXPORTER_ENRICHMENT, loudly
        # Dynatrace's entity attributes under the application's: its own values win a clash.
        resource = _enrichment.under(resource, _enrichment.attributes())
    exporter = DynatraceLogExporter(config=config)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    exporter._follow_flushes_of(logger_provider)  # flush means delivered (exporter docstring)
    tracer_provider = TracerProvider(resource=resource)
    bridge = SpanEventBridge(logger_provider) if span_events else None
    if bridge is not None:
        tracer_provider.add_span_processor(bridge)
    handler: logging.Handler | None = None
    if logging_handler and fast_handler:  # JSON log ingest whatever the exporter's protocol
        handler = DynatraceHandler(logging_level, resource=resource,
                                   config=dataclasses.replace(config, protocol="json"))
    elif logging_handler:
        handler = _logging_handler(logger_provider, logging_level)
    if handler is not None:
        logging.getLogger().addHandler(handler)
    if set_global:
        with _overrides_held_back() as overridden:
            _logs.set_logger_provider(logger_provider)
            trace.set_tracer_provider(tracer_provider)
        if overridden:
            warnings.warn(
                "OpenTelemetry's global " + " and ".join(overridden) + " was already set "
                "(by opentelemetry-instrument, other setup code, or a setup since shut down) "
                "and stays: this setup's are not global (logging still reaches Dynatrace "
                "through its handler; pass set_global=False to say so)",
                RuntimeWarning, stacklevel=3,
            )
    return DynatraceSetup(logger_provider, tracer_provider, exporter, bridge, handler)


@contextmanager
def _overrides_held_back() -> Iterator[list[str]]:
    """Within: the SDK's "Overriding of current <Provider> is not allowed" records are dropped
    (before any handler, ours included, sees them); yields the providers they named."""
    overridden: list[str] = []

    def hold_back(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Overriding of current "):
            overridden.append(message.split()[3])
            return False
        return True

    loggers = [logging.getLogger(name) for name in _OVERRIDE_LOGGERS]
    for logger in loggers:
        logger.addFilter(hold_back)
    try:
        yield overridden
    finally:
        for logger in loggers:
            logger.removeFilter(hold_back)


def _logging_handler(provider: LoggerProvider, level: int) -> logging.Handler:
    """The current OTel logging handler if installed, else the SDK's (deprecated) one."""
    try:
        from opentelemetry.instrumentation.logging.handler import LoggingHandler
    except ImportError:
        from opentelemetry.sdk._logs import LoggingHandler as SdkHandler

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return SdkHandler(level=level, logger_provider=provider)
    return LoggingHandler(level=level, logger_provider=provider)
