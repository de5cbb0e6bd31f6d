"""Shared by the benchmarks: the reference records and a loopback sink in its own process.

Records follow one fixed recipe, the same for every benchmark: genuine SDK records made
through Logger.emit, a 120-character body, 6 attributes (4 str, 1 int, 1 float), a severity
mix, a random trace and span id each, and the reference resource.
"""

from __future__ import annotations

import gc
import http.server
import multiprocessing as mp
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

N = int(os.environ.get("BENCH_N", "50000"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))
BATCH = 512
T = TypeVar("T")

RESOURCE = Resource.create({
    "service.name": "checkout-service",
    "service.version": "2.14.3",
    "deployment.environment.name": "production",
    "host.name": "ip-10-0-12-34.eu-west-1.compute.internal",
    "k8s.namespace.name": "shop",
    "k8s.pod.name": "checkout-service-7d9f8b6c5-x2k4p",
})
LEVELS = [(SeverityNumber.INFO, "INFO"), (SeverityNumber.INFO, "INFO"),
          (SeverityNumber.WARN, "WARN"), (SeverityNumber.ERROR, "ERROR"),
          (SeverityNumber.DEBUG, "DEBUG")]


def make_records(n: int = N, seed: int = 42) -> list[ReadableLogRecord]:
    rng = random.Random(seed)
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("checkout.orders", "2.14.3")
    base_ns = time.time_ns()
    for i in range(n):
        span = SpanContext(rng.getrandbits(128), rng.getrandbits(64), False,
                           TraceFlags(TraceFlags.SAMPLED))
        severity, text = LEVELS[i % len(LEVELS)]
        body = (f"Processed order {100000 + i} for customer c-{rng.randint(1000, 99999)} in "
                f"{rng.uniform(1, 900):.1f} ms; items={rng.randint(1, 20)} "
                f"total={rng.uniform(5, 500):.2f} EUR status=CONFIRMED region=eu-west-1 "
                + "x" * 120)[:120]
        logger.emit(
            timestamp=base_ns + i * 1_000_000,
            context=trace.set_span_in_context(NonRecordingSpan(span)),
            severity_number=severity, severity_text=text, body=body,
            attributes={
                "http.request.method": "POST",
                "url.path": f"/api/v1/orders/{100000 + i}",
                "http.response.status_code": 200 + (i % 3) * 100,
                "order.duration_ms": rng.uniform(1, 900),
                "user.id": f"u-{rng.randint(100000, 999999)}",
                "code.function.name": "handle_checkout",
            },
        )
    records = list(memory.get_finished_logs())
    provider.shutdown()
    return records


def batches(seq: list[T], size: int = BATCH) -> list[list[T]]:
    return [seq[i:i + size] for i in range(0, len(seq), size)]


def best_of(fn: Callable[[], T], repeat: int = REPEAT) -> tuple[float, T]:
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    assert result is not None
    return best, result


class _Sink(http.server.BaseHTTPRequestHandler):
    """Reads the body and answers at once: 204 for JSON, 200 + empty protobuf for OTLP."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        otlp = self.path.endswith("/v1/logs")
        self.send_response(200 if otlp else 204)
        if otlp:
            self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _serve(port_queue: Any) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    port_queue.put(server.server_address[1])
    server.serve_forever()


@contextmanager
def loopback_sink() -> Iterator[str]:
    """A sink in a separate process (so it does not compete for our GIL); yields its base URL."""
    ports: Any = mp.Queue()
    process = mp.Process(target=_serve, args=(ports,), daemon=True)
    process.start()
    try:
        yield f"http://127.0.0.1:{ports.get(timeout=10)}"
    finally:
        process.terminate()
        process.join(5)


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
