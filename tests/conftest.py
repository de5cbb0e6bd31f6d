"""Shared fixtures: a clean environment for every test, the emulator, and record factories."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

pytest_plugins = ["dt_exporter.testing.pytest_plugin"]

RecordFactory = Callable[..., list[ReadableLogRecord]]
_PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DT_*, OTEL_* or proxy variable from the developer's shell may leak into a test (an
    ambient HTTP_PROXY would route the emulator's loopback traffic through it)."""
    for name in list(os.environ):
        if name.startswith(("DT_", "OTEL_")) or name.lower() in _PROXY_VARIABLES:
            monkeypatch.delenv(name)


@pytest.fixture
def make_records() -> RecordFactory:
    """Genuine SDK records, made the way an application makes them (Logger.emit)."""

    def factory(
        count: int,
        *,
        body: Callable[[int], Any] = lambda i: f"record {i}",
        attributes: Callable[[int], Mapping[str, Any]] = lambda i: {"test.id": i},
        severity: SeverityNumber = SeverityNumber.INFO,
        timestamp_ns: int | None = None,
        with_span: bool = False,
        resource: Mapping[str, Any] | None = None,
        scope: str = "tests",
    ) -> list[ReadableLogRecord]:
        memory = InMemoryLogRecordExporter()
        provider = LoggerProvider(
            resource=Resource.create(dict(resource or {"service.name": "test-service"})),
            shutdown_on_exit=False,
        )
        provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
        logger = provider.get_logger(scope)
        rng = random.Random(count)
        now = time.time_ns() if timestamp_ns is None else timestamp_ns
        for i in range(count):
            context = None
            if with_span:
                span_context = SpanContext(rng.getrandbits(128), rng.getrandbits(64), False,
                                           TraceFlags(TraceFlags.SAMPLED))
                context = trace.set_span_in_context(NonRecordingSpan(span_context))
            logger.emit(timestamp=now + i * 1000, context=context, severity_number=severity,
                        severity_text=severity.name, body=body(i), attributes=attributes(i))
        records = list(memory.get_finished_logs())
        provider.shutdown()
        return records

    return factory
