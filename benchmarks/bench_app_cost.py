"""What one stdlib `logging.info()` costs the application, per path to Dynatrace (issue 16).

Each configuration runs in its own Python process (`python bench_app_cost.py --one NAME URL`),
BENCH_REPEAT times (default 3; the table shows the median). A process sets its path up, then
measures the CPU time of the whole process, every thread included (`time.process_time()`:
user + system of the process), over N = BENCH_CALLS (default 20,000) calls of

    log.info("order %s processed in %d ms", i, 42, extra={"order.id": i, "customer.tier": "gold"})

inside one recording SDK span, followed by the path's flush (delivery included: the HTTP work of
background threads is inside the measurement). Every path to a sink must account for all N
records (delivered, or exported successfully), or the run fails. The sinks are `_common`'s
loopback server, in another process, so their CPU is not ours.

Rows: `logging.NullHandler` (the floor: what logging itself costs), OpenTelemetry's
`LoggingHandler` + `BatchLogRecordProcessor` (max_queue_size N, so none is dropped) around an
exporter that does nothing, around the official `OTLPLogExporter` (gzip), around
`DynatraceLogExporter` (JSON, then OTLP), and `DynatraceHandler` (defaults: JSON, gzip-1).

Run: python benchmarks/bench_app_cost.py     (BENCH_CALLS, BENCH_REPEAT to change sizes)
Target (issue 16): DynatraceHandler <= 2x the NullHandler's CPU per call.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import loopback_sink, print_table

CALLS = int(os.environ.get("BENCH_CALLS", "20000"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
TOKEN = "dt0c01.BENCH.TOKEN"
ROWS = {
    "null": "`logging.NullHandler`",
    "otel-noop": "OTel `LoggingHandler` + `BatchLogRecordProcessor` + no-op exporter",
    "otel-official": "... + official `OTLPLogExporter` (gzip)",
    "otel-dt-json": "... + `DynatraceLogExporter` JSON",
    "otel-dt-otlp": "... + `DynatraceLogExporter` OTLP",
    "dt-handler": "`DynatraceHandler`",
}
Finish = Callable[[], int]  # flushes; returns the records the path accounts as delivered


def _otel_handler(provider: Any) -> logging.Handler:
    """The handler `setup_dynatrace()` installs: the current OTel one, else the SDK's."""
    try:
        from opentelemetry.instrumentation.logging.handler import LoggingHandler
    except ImportError:
        from opentelemetry.sdk._logs import LoggingHandler as SdkHandler

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return SdkHandler(logger_provider=provider)
    return LoggingHandler(logger_provider=provider)


class _Counting:
    """Wraps an exporter: counts the records of batches it exported successfully."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.exported = 0

    def export(self, batch: Sequence[Any]) -> Any:
        from opentelemetry.sdk._logs.export import LogRecordExportResult

        result = LogRecordExportResult.SUCCESS if self.inner is None else self.inner.export(batch)
        if result is LogRecordExportResult.SUCCESS:
            self.exported += len(batch)
        return result

    def shutdown(self) -> None:
        if self.inner is not None:
            self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True if self.inner is None else bool(self.inner.force_flush(timeout_millis))


def _setup(name: str, url: str) -> tuple[logging.Handler, Finish]:
    if name == "null":
        return logging.NullHandler(), lambda: CALLS
    if name == "dt-handler":
        from dt_exporter import DynatraceHandler

        handler = DynatraceHandler(endpoint=url, token=TOKEN)

        def finish_handler() -> int:
            assert handler.flush(60), "DynatraceHandler.flush timed out"
            stats = handler.stats()
            assert stats.balanced, stats
            return stats.delivered

        return handler, finish_handler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    inner: Any = None
    if name == "otel-official":
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        inner = OTLPLogExporter(endpoint=f"{url}/v1/logs", compression=Compression.Gzip)
    elif name.startswith("otel-dt-"):
        from dt_exporter import DynatraceLogExporter

        inner = DynatraceLogExporter(endpoint=url, token=TOKEN, protocol=name[len("otel-dt-"):])
    counting = _Counting(inner)
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(BatchLogRecordProcessor(counting, max_queue_size=CALLS))

    def finish_otel() -> int:
        provider.force_flush()
        if inner is not None and name.startswith("otel-dt-"):
            assert inner.force_flush(60_000), "DynatraceLogExporter.force_flush timed out"
            stats = inner.stats()
            assert stats.balanced, stats
            return int(stats.delivered)
        return counting.exported

    return _otel_handler(provider), finish_otel


def one(name: str, url: str) -> dict[str, float]:
    """One configuration, in this process: CPU and wall time of N calls plus the flush."""
    from opentelemetry.sdk.trace import TracerProvider

    handler, finish = _setup(name, url)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    log = logging.getLogger("checkout.orders")
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("bench")
    cpu, wall = time.process_time(), time.perf_counter()
    with tracer.start_as_current_span("POST /api/checkout"):
        for i in range(CALLS):
            log.info("order %s processed in %d ms", i, 42,
                     extra={"order.id": i, "customer.tier": "gold"})
    delivered = finish()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert delivered == CALLS, f"{name}: {delivered} of {CALLS} records delivered"
    root.removeHandler(handler)
    return {"cpu_us": cpu * 1e6 / CALLS, "wall_us": wall * 1e6 / CALLS}


def main() -> None:
    print(f"# {platform.machine()} python {sys.version.split()[0]} calls={CALLS} "
          f"repeat={REPEAT} (median), CPU of the whole process, every thread")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in ROWS}
    with loopback_sink() as url:
        for _ in range(REPEAT):  # interleaved: a noisy neighbour hurts every row alike
            for name in ROWS:
                done = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--one", name, url],
                    capture_output=True, text=True, check=False, timeout=600,
                    env={**os.environ, "BENCH_CALLS": str(CALLS)})
                if done.returncode != 0:
                    raise SystemExit(f"{name} failed:\n{done.stderr}")
                results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    floor = statistics.median(r["cpu_us"] for r in results["null"])
    rows = []
    for name, label in ROWS.items():
        cpu = statistics.median(r["cpu_us"] for r in results[name])
        wall = statistics.median(r["wall_us"] for r in results[name])
        rows.append([label, f"{cpu:.1f}", f"{cpu / floor:.1f}x", f"{wall:.1f}"])
    print_table(f"CPU per logging.info() call, {CALLS:,} calls inside a span, then flush",
                ["path", "CPU µs per call", "vs NullHandler", "wall µs per call"], rows)
    handler_cpu = statistics.median(r["cpu_us"] for r in results["dt-handler"])
    print(f"\nDynatraceHandler: {handler_cpu / floor:.2f}x the NullHandler (target <= 2x)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(json.dumps(one(sys.argv[2], sys.argv[3])))
    else:
        main()
