"""SpanEventBridge end to end: SDK tracer -> bridge -> our exporter -> the emulator."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider

from dt_exporter import DynatraceLogExporter
from dt_exporter.bridge import SpanEventBridge
from dt_exporter.testing import DynatraceEmulator


def pipeline(dt: DynatraceEmulator, **bridge_settings):
    exporter = DynatraceLogExporter(endpoint=dt.url, token=dt.token, backoff_initial_s=0.01)
    logs = LoggerProvider(shutdown_on_exit=False)
    logs.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=20))
    traces = TracerProvider(shutdown_on_exit=False)
    traces.add_span_processor(SpanEventBridge(logs, **bridge_settings))
    return exporter, logs, traces


def finish(exporter, logs) -> None:
    logs.force_flush()
    assert exporter.force_flush(10_000)
    assert exporter.stats().balanced


def test_recorded_exception_becomes_an_error_record_of_the_same_span(emulator):
    """The exception event arrives as ERROR with the span's trace id, span id and name."""
    exporter, logs, traces = pipeline(emulator)
    with traces.get_tracer("t").start_as_current_span("charge card") as span:
        try:
            raise ValueError("card declined")
        except ValueError as exc:
            span.record_exception(exc)
        context = span.get_span_context()
    finish(exporter, logs)
    (record,) = emulator.wait_for_records(1)
    assert record.loglevel == "ERROR"
    assert record.content == "card declined"
    assert record.trace_id == format(context.trace_id, "032x")
    assert record.span_id == format(context.span_id, "016x")
    assert record.attributes["span.name"] == "charge card"
    assert record.attributes["exception.type"] == "ValueError"
    assert "Traceback" in record.attributes["exception.stacktrace"]


def test_other_events_use_the_configured_level_and_filters_apply(emulator):
    """include/exclude pick events by name; non-exception events get the configured level."""
    exporter, logs, traces = pipeline(emulator, exclude="noise", level="WARN")
    with traces.get_tracer("t").start_as_current_span("work") as span:
        span.add_event("cache.miss", {"cache.key": "k1"})
        span.add_event("noise")
    finish(exporter, logs)
    (record,) = emulator.wait_for_records(1)
    assert (record.content, record.loglevel) == ("cache.miss", "WARN")
    assert record.attributes["cache.key"] == "k1"
    assert [r.content for r in emulator.records] == ["cache.miss"]


def test_include_list_limits_the_bridge_to_named_events(emulator):
    """With include=exception, only exception events are bridged."""
    exporter, logs, traces = pipeline(emulator, include="exception")
    with traces.get_tracer("t").start_as_current_span("work") as span:
        span.add_event("cache.miss")
        span.record_exception(RuntimeError("boom"))
    finish(exporter, logs)
    assert [r.content for r in emulator.wait_for_records(1)] == ["boom"]


def test_an_exception_already_logged_in_the_span_is_not_sent_twice(emulator):
    """logger.exception(...) inside the span plus record_exception gives one record."""
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    exporter, logs, traces = pipeline(emulator)
    handler = LoggingHandler(logger_provider=logs)
    log = logging.getLogger("bridge-dedupe")
    log.addHandler(handler)
    log.propagate = False
    try:
        with traces.get_tracer("t").start_as_current_span("work") as span:
            try:
                raise KeyError("sku-17")
            except KeyError as exc:
                log.exception("lookup failed")
                span.record_exception(exc)
            span.record_exception(TimeoutError("other"))  # not logged: bridged
    finally:
        log.removeHandler(handler)
    finish(exporter, logs)
    contents = sorted(r.content for r in emulator.wait_for_records(2))
    assert contents == ["lookup failed", "other"]


def test_on_end_never_raises_into_the_application():
    """A failing log pipeline is caught inside the bridge, not on the application's thread."""

    class Exploding(SimpleLogRecordProcessor):
        def on_emit(self, log_record):
            raise RuntimeError("processor bug")

    logs = LoggerProvider(shutdown_on_exit=False)
    logs.add_log_record_processor(Exploding(DynatraceLogExporter(endpoint="http://127.0.0.1:9/v2/logs/ingest")))
    traces = TracerProvider(shutdown_on_exit=False)
    traces.add_span_processor(SpanEventBridge(logs))
    with traces.get_tracer("t").start_as_current_span("work") as span:
        span.record_exception(ValueError("x"))
    # reaching this line is the assertion that matters; the span ended normally:
    assert not span.is_recording()


def test_demo_runs_against_the_built_in_emulator():
    """`dt-exporter demo` with no DT_ENDPOINT prints what the emulator received, exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DT_", "OTEL_"))}
    result = subprocess.run([sys.executable, "-m", "dt_exporter", "demo"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("ERROR") and "card declined" in line for line in lines)
    assert any(line.startswith("CRITICAL") and "inventory out of sync" in line for line in lines)
    assert any(line.startswith("WARN") and "payment provider slow" in line for line in lines)
    assert "dropped 0" in result.stdout
