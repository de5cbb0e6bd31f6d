"""Cost of SpanEventBridge.on_end on the application's thread, per span event.

Spans with K events each end through the bridge into a LoggerProvider with the SDK's batch
processor around a no-op exporter (what the application thread pays is emitting into that
queue). Compared in the same run with the same spans ending without the bridge.

Run: python benchmarks/bench_bridge.py      (BENCH_SPANS, BENCH_EVENTS to change sizes)
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from _common import print_table
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.trace import TracerProvider

from dt_exporter.bridge import SpanEventBridge

SPANS = int(os.environ.get("BENCH_SPANS", "5000"))
EVENTS = int(os.environ.get("BENCH_EVENTS", "4"))


class _Discard(LogRecordExporter):
    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def run(with_bridge: bool) -> float:
    logs = LoggerProvider(shutdown_on_exit=False)
    logs.add_log_record_processor(BatchLogRecordProcessor(_Discard(), max_queue_size=100_000))
    traces = TracerProvider(shutdown_on_exit=False)
    if with_bridge:
        traces.add_span_processor(SpanEventBridge(logs))
    tracer = traces.get_tracer("bench")
    error = ValueError("card declined: insufficient funds")
    spans = []
    for _ in range(SPANS):  # events are recorded outside the timed part
        span = tracer.start_span("POST /api/checkout")
        span.record_exception(error)
        for i in range(EVENTS - 1):
            span.add_event("retry.scheduled", {"retry.attempt": i})
        spans.append(span)
    started = time.perf_counter()
    for span in spans:
        span.end()
    elapsed = time.perf_counter() - started
    logs.shutdown()
    return elapsed


def main() -> None:
    base, bridged = min(run(False) for _ in range(3)), min(run(True) for _ in range(3))
    events = SPANS * EVENTS
    rows = [
        ["span.end() without the bridge", f"{base * 1e6 / SPANS:.1f}", "—"],
        ["span.end() with the bridge", f"{bridged * 1e6 / SPANS:.1f}",
         f"{(bridged - base) * 1e6 / events:.1f}"],
    ]
    print_table(f"SpanEventBridge.on_end, {SPANS} spans x {EVENTS} events (1 exception)",
                ["case", "µs per span end", "added µs per span event"], rows)


if __name__ == "__main__":
    main()
