"""How many log records per second the emulator takes from one keep-alive client.

The emulator runs in this process; the client runs in another (so the two do not share a GIL),
posting pre-built bodies of 1,000 records over one urllib3 keep-alive connection. Prints a
markdown table. Run: `.venv/bin/python benchmarks/bench_emulator.py [--requests N]`.
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing
import time
from datetime import datetime, timezone
from typing import Any

import orjson
import urllib3

from dt_exporter.testing import DynatraceEmulator

WARMUP_REQUESTS = 3


def make_records(count: int) -> list[dict[str, Any]]:
    """Records shaped like the exporter's: special fields, ids, a few attributes, one object."""
    stamp = datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return [
        {
            "timestamp": stamp,
            "loglevel": "INFO" if i % 10 else "ERROR",
            "content": f"order {i} processed in {i % 97} ms",
            "service.name": "checkout",
            "service.version": "1.4.2",
            "trace_id": f"{i:032x}",
            "span_id": f"{i:016x}",
            "http.route": "/api/orders/{id}",
            "http.status_code": 200,
            "attempt": i % 3,
            "user": {"id": f"u{i}", "tier": "gold"},
        }
        for i in range(count)
    ]


def make_otlp_body(count: int) -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import SEVERITY_NUMBER_INFO, LogRecord

    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.add(
        key="service.name", value=AnyValue(string_value="checkout")
    )
    scope_logs = resource_logs.scope_logs.add()
    now_ns = time.time_ns()
    for i in range(count):
        scope_logs.log_records.append(
            LogRecord(
                time_unix_nano=now_ns,
                severity_number=SEVERITY_NUMBER_INFO,
                severity_text="INFO",
                body=AnyValue(string_value=f"order {i} processed"),
                trace_id=i.to_bytes(16, "big"),
                span_id=i.to_bytes(8, "big"),
                attributes=[KeyValue(key="http.route", value=AnyValue(string_value="/x"))],
            )
        )
    return bytes(request.SerializeToString())


def client(port: int, token: str, scenario: str, requests: int, per_request: int, out: Any) -> None:
    """Post `requests` bodies over one connection; report the seconds it took."""
    headers = {"Authorization": f"Api-Token {token}"}
    if scenario == "otlp":
        body = make_otlp_body(per_request)
        headers["Content-Type"] = "application/x-protobuf"
        path = "/api/v2/otlp/v1/logs"
    else:
        body = orjson.dumps(make_records(per_request))
        headers["Content-Type"] = "application/json; charset=utf-8"
        path = "/api/v2/logs/ingest"
    if scenario != "json":
        body = gzip.compress(body, compresslevel=6)
        headers["Content-Encoding"] = "gzip"
    pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1, retries=False, timeout=30.0)
    for _ in range(WARMUP_REQUESTS):
        pool.urlopen("POST", path, body=body, headers=headers)
    started = time.perf_counter()
    for _ in range(requests):
        response = pool.urlopen("POST", path, body=body, headers=headers)
        if response.status not in (200, 204):
            raise RuntimeError(f"{response.status}: {response.data[:200]!r}")
    out.put((time.perf_counter() - started, len(body)))
    pool.close()


def run(scenario: str, requests: int, per_request: int) -> tuple[float, int]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    with DynatraceEmulator(max_history=10 * per_request) as dt:
        process = context.Process(
            target=client, args=(dt.port, dt.token, scenario, requests, per_request, results)
        )
        process.start()
        seconds, body_bytes = results.get(timeout=600)
        process.join()
        stored = len(dt.requests)
    if stored != requests + WARMUP_REQUESTS:
        raise RuntimeError(f"expected {requests + WARMUP_REQUESTS} requests, saw {stored}")
    return seconds, body_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--records-per-request", type=int, default=1000)
    args = parser.parse_args()
    per = args.records_per_request
    print(f"{args.requests} requests of {per} records, one keep-alive client process\n")
    print("| scenario | body bytes (sent) | records | seconds | records/s |")
    print("|---|---:|---:|---:|---:|")
    for scenario, label in (
        ("json-gzip", "JSON, gzip"),
        ("json", "JSON, uncompressed"),
        ("otlp", "OTLP protobuf, gzip"),
    ):
        seconds, body_bytes = run(scenario, args.requests, per)
        records = args.requests * per
        print(
            f"| {label} | {body_bytes:,} | {records:,} | {seconds:.2f} | {records / seconds:,.0f} |"
        )


if __name__ == "__main__":
    main()
