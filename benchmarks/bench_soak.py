"""Outage soak: 2,000 records/s with the backend down for SOAK_SECONDS (default 300), then up.

Each exporter runs in its own process behind the SDK's BatchLogRecordProcessor with default
settings, against the same kind of sink (another process) that answers 503 while "down":
- DynatraceLogExporter (JSON, gzip-1, default 64 MiB queue);
- the official OTLPLogExporter (protobuf, gzip).
Reported: records emitted, received by the sink, lost, peak RSS, peak queue bytes (ours), and
the drain time from recovery until the sink has everything (or DRAIN_LIMIT seconds pass).

Run: python benchmarks/bench_soak.py            (SOAK_SECONDS=60 for a shorter run)
"""

from __future__ import annotations

import gzip
import http.server
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import time
from typing import Any

from _common import print_table

RATE = int(os.environ.get("SOAK_RATE", "2000"))
SECONDS = int(os.environ.get("SOAK_SECONDS", "300"))
DRAIN_LIMIT = float(os.environ.get("DRAIN_LIMIT", "120"))


def _sink(port_queue: Any, down: Any, received: Any) -> None:
    import orjson
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    class Sink(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if down.value:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.headers.get("Content-Encoding") == "gzip":
                data = gzip.decompress(data)
            if self.path.endswith("/v1/logs"):
                request = ExportLogsServiceRequest.FromString(data)
                count = sum(len(s.log_records) for r in request.resource_logs
                            for s in r.scope_logs)
            else:
                count = len(orjson.loads(data))
            with received.get_lock():
                received.value += count
            self.send_response(200 if self.path.endswith("/v1/logs") else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    port_queue.put(server.server_address[1])
    server.serve_forever()


def run_kind(kind: str) -> dict[str, Any]:
    """One soak, in this process: the exporter under test plus a sink process."""
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    ports: Any = mp.Queue()
    down, received = mp.Value("b", 1), mp.Value("q", 0)
    sink = mp.Process(target=_sink, args=(ports, down, received), daemon=True)
    sink.start()
    url = f"http://127.0.0.1:{ports.get(timeout=10)}"
    ours = None
    if kind == "ours":
        from dt_exporter import DynatraceLogExporter

        ours = DynatraceLogExporter(endpoint=url, token="dt0c01.SOAK.TOKEN", backoff_max_s=5.0)
        exporter: Any = ours
    else:
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        exporter = OTLPLogExporter(endpoint=f"{url}/v1/logs", compression=Compression.Gzip)
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    logger = provider.get_logger("soak")
    body = "Processed order for customer c-1042 in 12.5 ms; status=CONFIRMED " + "x" * 55
    emitted, peak_queue = 0, 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < SECONDS:
        due = int(elapsed * RATE)
        while emitted < due:
            logger.emit(severity_number=SeverityNumber.INFO, body=body,
                        attributes={"test.id": emitted, "user.id": "u-1"})
            emitted += 1
        if ours is not None:
            peak_queue = max(peak_queue, ours.stats().queued_bytes)
        time.sleep(0.01)
    down.value = 0
    recovered = time.monotonic()
    provider.force_flush()
    while received.value < emitted and time.monotonic() - recovered < DRAIN_LIMIT:
        if ours is not None:
            ours.force_flush(100)
        time.sleep(0.05)
    drain = time.monotonic() - recovered
    result = {
        "kind": kind, "emitted": emitted, "received": received.value,
        "lost": emitted - received.value, "drain_s": round(drain, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_queue_mb": round(peak_queue / 2**20, 2) if ours is not None else None,
    }
    if ours is not None:
        stats = ours.stats()
        result["dropped"] = dict(stats.dropped)
        result["retries"] = stats.retries
    provider.shutdown()
    sink.terminate()
    return result


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--kind":
        print(json.dumps(run_kind(sys.argv[2])))
        return
    print(f"# soak: {RATE} records/s, backend down for {SECONDS} s, then up")
    rows = []
    for kind, label in (("ours", "DynatraceLogExporter"), ("official", "OTLPLogExporter")):
        out = subprocess.run([sys.executable, __file__, "--kind", kind], capture_output=True,
                             text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        rows.append([label, f"{r['emitted']:,}", f"{r['received']:,}", f"{r['lost']:,}",
                     f"{100 * r['lost'] / max(r['emitted'], 1):.1f} %", str(r["peak_rss_mb"]),
                     str(r["peak_queue_mb"] if r["peak_queue_mb"] is not None else "—"),
                     str(r["drain_s"]), str(r.get("dropped", "—"))])
    print_table("Outage soak", ["exporter", "emitted", "received", "lost", "lost %",
                                "peak RSS MB", "peak queue MB", "drain s", "dropped"], rows)


if __name__ == "__main__":
    main()
