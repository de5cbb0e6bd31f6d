"""SimpleLogRecordProcessor: one export() per record. How many requests reach Dynatrace?

The SDK's SimpleLogRecordProcessor calls `export([record])` on the application's thread for
every record. The official exporter then makes one HTTP request per record; our channel
coalesces the small bodies that wait together into one request (within the request limits).
Each row: N `logging.info` calls through OpenTelemetry's logging handler, then
`force_flush()`, against the emulator on 127.0.0.1, which counts requests and records.

Run: python benchmarks/bench_simple_processor.py      (BENCH_N to change N, default 10,000)
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from _common import print_table
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

from dt_exporter import DynatraceLogExporter
from dt_exporter.testing import DynatraceEmulator

N = int(os.environ.get("BENCH_N", "10000"))


def run(make_exporter: Callable[[DynatraceEmulator], Any]) -> tuple[int, int, float]:
    """(requests, records received, seconds) for N log calls through a SimpleLogRecordProcessor."""
    with DynatraceEmulator() as dt:
        provider = LoggerProvider(shutdown_on_exit=False)
        provider.add_log_record_processor(SimpleLogRecordProcessor(make_exporter(dt)))
        logger = logging.getLogger("bench.simple")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        handler = LoggingHandler(logger_provider=provider)
        logger.addHandler(handler)
        started = time.perf_counter()
        for i in range(N):
            logger.info("order %d accepted", i, extra={"order.id": i})
        provider.force_flush()
        elapsed = time.perf_counter() - started
        logger.removeHandler(handler)
        provider.shutdown()
        return len(dt.requests), len(dt.records), elapsed


def main() -> None:
    print(f"# {platform.machine()} python {sys.version.split()[0]} N={N}")
    rows = []
    paths: list[tuple[str, Callable[[DynatraceEmulator], Any]]] = [
        ("DynatraceLogExporter (JSON)",
         lambda dt: DynatraceLogExporter(endpoint=dt.url, token=dt.token)),
        ("DynatraceLogExporter (OTLP)",
         lambda dt: DynatraceLogExporter(endpoint=dt.url, token=dt.token, protocol="otlp")),
        ("official OTLPLogExporter",
         lambda dt: OTLPLogExporter(endpoint=f"{dt.url}/api/v2/otlp/v1/logs",
                                    headers={"Authorization": f"Api-Token {dt.token}"})),
    ]
    for name, make in paths:
        requests, records, seconds = run(make)
        rows.append([name, f"{records:,} / {N:,}", f"{requests:,}",
                     f"{requests * 10_000 / N:,.1f}", f"{seconds:.2f}"])
    print_table(f"SimpleLogRecordProcessor, {N:,} records", [
        "exporter", "delivered", "requests", "requests per 10,000 records", "wall s"], rows)


if __name__ == "__main__":
    main()
