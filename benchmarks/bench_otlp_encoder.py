"""dt_exporter.otlp.encode_log_requests against the official OTLP encoder, in one run.

Records: the reference recipe (shared/reference/opentelemetry-python.md, section 6): genuine SDK
records through Logger.emit → SimpleLogRecordProcessor → InMemoryLogRecordExporter, 120-char
bodies, 6 attributes, a trace context each, cut into batches of 512 as the BLRP makes them.

Run:   .venv/bin/python benchmarks/bench_otlp_encoder.py
       BENCH_N=10000 BENCH_REPEAT=3 .venv/bin/python benchmarks/bench_otlp_encoder.py
"""

from __future__ import annotations

import collections
import gc
import importlib.metadata
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from google.protobuf.internal import api_implementation
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from dt_exporter.limits import GRAIL
from dt_exporter.otlp import encode_log_requests

N = int(os.environ.get("BENCH_N", "50000"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))
BATCH = 512
rng = random.Random(42)
T = TypeVar("T")

RESOURCE = Resource.create(
    {
        "service.name": "checkout-service",
        "service.version": "2.14.3",
        "deployment.environment.name": "production",
        "host.name": "ip-10-0-12-34.eu-west-1.compute.internal",
        "k8s.namespace.name": "shop",
        "k8s.pod.name": "checkout-service-7d9f8b6c5-x2k4p",
    }
)
LEVELS = [
    (SeverityNumber.INFO, "INFO"),
    (SeverityNumber.INFO, "INFO"),
    (SeverityNumber.WARN, "WARN"),
    (SeverityNumber.ERROR, "ERROR"),
    (SeverityNumber.DEBUG, "DEBUG"),
]


def make_body(i: int) -> str:
    s = (
        f"Processed order {100000 + i} for customer c-{rng.randint(1000, 99999)} in "
        f"{rng.uniform(1, 900):.1f} ms; items={rng.randint(1, 20)} "
        f"total={rng.uniform(5, 500):.2f} EUR status=CONFIRMED region=eu-west-1"
    )
    return (s + " " + "x" * 120)[:120]


def make_records(n: int) -> list[ReadableLogRecord]:
    """Produce genuine SDK ReadableLogRecords by going through Logger.emit."""
    mem = InMemoryLogRecordExporter()
    lp = LoggerProvider(resource=RESOURCE, shutdown_on_exit=False)
    lp.add_log_record_processor(SimpleLogRecordProcessor(mem))
    lg = lp.get_logger("checkout.orders", "2.14.3")
    base_ns = time.time_ns()
    for i in range(n):
        sc = SpanContext(
            trace_id=rng.getrandbits(128),
            span_id=rng.getrandbits(64),
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        ctx = trace.set_span_in_context(NonRecordingSpan(sc))
        sev, txt = LEVELS[i % len(LEVELS)]
        lg.emit(
            timestamp=base_ns + i * 1_000_000,
            context=ctx,
            severity_number=sev,
            severity_text=txt,
            body=make_body(i),
            attributes={
                "http.request.method": "POST",
                "url.path": f"/api/v1/orders/{100000 + i}",
                "http.response.status_code": 200 + (i % 3) * 100,
                "order.duration_ms": rng.uniform(1, 900),
                "user.id": f"u-{rng.randint(100000, 999999)}",
                "code.function.name": "handle_checkout",
            },
        )
    records = list(mem.get_finished_logs())
    lp.shutdown()
    return records


def best_of(fns: Sequence[Callable[[], T]], repeat: int = REPEAT) -> list[tuple[float, T]]:
    """Best seconds and last result of each fn, taking turns so load hits all of them alike."""
    best = [float("inf")] * len(fns)
    results: list[T] = []
    for _ in range(repeat):
        results = []
        for i, fn in enumerate(fns):
            gc.collect()
            t0 = time.perf_counter()
            results.append(fn())
            best[i] = min(best[i], time.perf_counter() - t0)
    return list(zip(best, results, strict=True))


def ours(chunks: Sequence[Sequence[ReadableLogRecord]]) -> list[bytes]:
    truncations: collections.Counter[str] = collections.Counter()
    dropped: collections.Counter[str] = collections.Counter()
    out = [r.data for c in chunks for r in encode_log_requests(
        c, GRAIL, truncations=truncations, dropped=dropped
    )]
    assert not truncations, truncations
    assert not dropped, dropped
    return out


def official(chunks: Sequence[Sequence[ReadableLogRecord]]) -> list[bytes]:
    return [encode_logs(c).SerializeToString() for c in chunks]


def main() -> None:
    print(
        f"# {platform.machine()} nproc={os.cpu_count()} python={sys.version.split()[0]} "
        f"protobuf={importlib.metadata.version('protobuf')} ({api_implementation.Type()}) "
        f"opentelemetry-sdk={importlib.metadata.version('opentelemetry-sdk')} "
        f"N={N} batch={BATCH} best of {REPEAT}, encoders taking turns"
    )
    records = make_records(N)
    chunks = [records[i : i + BATCH] for i in range(0, len(records), BATCH)]

    (first,) = ours(chunks[:1])
    reference = encode_logs(chunks[0])
    print(f"# first batch: decoded messages equal: "
          f"{ExportLogsServiceRequest.FromString(first) == reference}; "
          f"bytes identical: {first == reference.SerializeToString()}")

    names = ("official encode_logs(batch).SerializeToString()",
             "dt_exporter.otlp.encode_log_requests")
    timings = best_of([lambda: official(chunks), lambda: ours(chunks)])
    rows = [(name, secs, sum(map(len, payloads)))
            for name, (secs, payloads) in zip(names, timings, strict=True)]

    print()
    print("| encoder | µs/record | records/s | bytes | B/record |")
    print("|---|---:|---:|---:|---:|")
    for name, secs, size in rows:
        print(f"| {name} | {secs * 1e6 / N:.2f} | {N / secs:,.0f} | {size:,} | {size / N:.0f} |")
    print(f"\nspeed-up: {rows[0][1] / rows[1][1]:.1f}x")


if __name__ == "__main__":
    main()
