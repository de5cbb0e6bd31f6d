"""One call to wire OpenTelemetry to Dynatrace by hand, for SDK setup code.

    handles = setup_dynatrace(service_name="checkout")
    ...
    handles.shutdown()

Creates a LoggerProvider with a BatchLogRecordProcessor around `DynatraceLogExporter`, a
TracerProvider carrying the `SpanEventBridge`, and (optionally) a stdlib logging handler on the
root logger. The resource gets Dynatrace's enrichment files merged under it (see
`dt_exporter._enrichment`; off with `DT_EXPORTER_ENRICHMENT=false`). Unlike
`DynatraceLogExporter()`, bad configuration raises `ConfigError` here: setup code is the place
to fail loudly.
"""

from __future__ import annotations

import logging
import warnings
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


@dataclass(frozen=True, slots=True)
class DynatraceSetup:
    """What `setup_dynatrace` built; `shutdown()` flushes and stops all of it."""

    logger_provider: LoggerProvider
    tracer_provider: TracerProvider
    exporter: DynatraceLogExporter
    bridge: SpanEventBridge | None
    handler: logging.Handler | None

    def shutdown(self) -> None:
        if self.handler is not None:
            logging.getLogger().removeHandler(self.handler)
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
    **exporter_settings: Any,
) -> DynatraceSetup:
    """Wire providers, exporter, bridge and logging handler; see the module docstring."""
    config = ExporterConfig.from_env(**exporter_settings)  # raises ConfigError, loudly
    attributes = {"service.name": service_name} if service_name else {}
    resource = (resource or Resource.create()).merge(Resource.create(attributes))
    if enrichment_enabled():  # raises ConfigError on a bad DT_EXPORTER_ENRICHMENT, loudly
        # Dynatrace's entity attributes under the application's: its own values win a clash.
        resource = _enrichment.under(resource, _enrichment.attributes())
    exporter = DynatraceLogExporter(config=config)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    tracer_provider = TracerProvider(resource=resource)
    bridge = SpanEventBridge(logger_provider) if span_events else None
    if bridge is not None:
        tracer_provider.add_span_processor(bridge)
    handler = _logging_handler(logger_provider, logging_level) if logging_handler else None
    if handler is not None:
        logging.getLogger().addHandler(handler)
    if set_global:
        _logs.set_logger_provider(logger_provider)
        trace.set_tracer_provider(tracer_provider)
    return DynatraceSetup(logger_provider, tracer_provider, exporter, bridge, handler)


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
