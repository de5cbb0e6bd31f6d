"""Type-checked (mypy --strict, in .ci/run) the way users write it: keeps the public API typed."""

from __future__ import annotations

import logging

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

from dt_exporter import (
    ConfigError,
    DeliveryStats,
    DynatraceHandler,
    DynatraceLogExporter,
    ExporterConfig,
)
from dt_exporter.bridge import SpanEventBridge
from dt_exporter.setup import DynatraceSetup, setup_dynatrace


def wire_by_hand() -> DeliveryStats:
    config = ExporterConfig.from_env({"DT_ENDPOINT": "https://abc.live.dynatrace.com",
                                      "DT_API_TOKEN": "dt0c01.X.Y"}, compression="none")
    exporter = DynatraceLogExporter(config=config)
    provider = LoggerProvider()
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    bridge: SpanEventBridge = SpanEventBridge(provider, level="WARN")
    assert bridge.config.level == "WARN"
    flushed: bool = exporter.force_flush(1000)
    assert isinstance(flushed, bool)
    return exporter.stats()


def wire_in_one_call() -> int:
    try:
        handles: DynatraceSetup = setup_dynatrace("svc", set_global=False)
    except ConfigError as error:
        logging.getLogger(__name__).error("bad setting %s", error.setting)
        return 2
    handles.shutdown()
    return handles.exporter.stats().delivered


def stdlib_logging_straight_to_dynatrace() -> DeliveryStats:
    handler = DynatraceHandler(logging.INFO, endpoint="https://abc.live.dynatrace.com",
                               token="dt0c01.X.Y", max_buffered_records=10_000)
    logging.getLogger().addHandler(handler)
    delivered: bool = handler.flush(5.0)
    assert isinstance(delivered, bool)
    handler.close()
    return handler.stats()
