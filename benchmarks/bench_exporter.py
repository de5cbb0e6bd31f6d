"""End to end: DynatraceLogExporter (JSON) vs the official OTLPLogExporter, same records, one run.

Both export the same 50,000 records in batches of 512 (as the SDK's batch processor makes them)
to the same loopback sink in another process, gzip on for both. Our exporter is timed until
force_flush() returns, so its sender thread's HTTP work is inside the measurement. The floor is
what no JSON exporter can beat: orjson + gzip-1 of the already-mapped dicts + the HTTP round trip.

Run: python benchmarks/bench_exporter.py    (BENCH_N, BENCH_REPEAT to change size and repeats)
"""

from __future__ import annotations

import platform
import sys
import zlib
from collections import Counter

import orjson
import urllib3
from _common import REPEAT, N, batches, best_of, loopback_sink, make_records, print_table
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs.export import LogRecordExportResult

from dt_exporter import GRAIL, DynatraceLogExporter
from dt_exporter.mapping import RecordMapper


def main() -> None:
    print(f"# {platform.machine()} python {sys.version.split()[0]} N={N} repeat={REPEAT} "
          f"batch=512")
    records = make_records()
    chunks = batches(records)
    results: dict[str, float] = {}
    with loopback_sink() as url:
        official = OTLPLogExporter(endpoint=f"{url}/v1/logs", compression=Compression.Gzip,
                                   timeout=10)

        def run_official() -> int:
            return sum(official.export(c) is LogRecordExportResult.SUCCESS for c in chunks)

        seconds, ok = best_of(run_official)
        assert ok == len(chunks), f"official exporter: {ok}/{len(chunks)} batches"
        results["official OTLPLogExporter (protobuf, gzip-9)"] = seconds
        official.shutdown()

        def run_ours(protocol: str) -> int:
            exporter = DynatraceLogExporter(endpoint=url, token="dt0c01.BENCH.TOKEN",
                                            protocol=protocol)
            for chunk in chunks:
                exporter.export(chunk)
            assert exporter.force_flush(60_000)
            stats = exporter.stats()
            exporter.shutdown()
            assert stats.delivered == N and stats.balanced, stats
            return stats.delivered

        seconds, _ = best_of(lambda: run_ours("json"))
        results["DynatraceLogExporter (JSON, gzip-1)"] = seconds
        seconds, _ = best_of(lambda: run_ours("otlp"))
        results["DynatraceLogExporter (OTLP, gzip-1)"] = seconds

        mapper = RecordMapper(GRAIL, Counter())
        mapped = [[mapper.map(r) for r in c] for c in chunks]
        pool = urllib3.PoolManager(retries=False)

        def run_floor() -> int:
            for objects in mapped:
                body = zlib.compressobj(1, zlib.DEFLATED, 31)
                data = body.compress(orjson.dumps(objects)) + body.flush()
                pool.request("POST", f"{url}/api/v2/logs/ingest", body=data,
                             headers={"Content-Encoding": "gzip",
                                      "Content-Type": "application/json; charset=utf-8"})
            return len(mapped)

        seconds, _ = best_of(run_floor)
        results["floor: orjson + gzip-1 + HTTP of pre-mapped dicts"] = seconds

    official_s = results["official OTLPLogExporter (protobuf, gzip-9)"]
    floor_s = results["floor: orjson + gzip-1 + HTTP of pre-mapped dicts"]
    rows = [
        [name, f"{N / s:,.0f}", f"{s * 1e6 / N:.2f}", f"{official_s / s:.2f}x",
         f"{s / floor_s:.2f}x"]
        for name, s in results.items()
    ]
    print_table(f"Export throughput, {N:,} records to a loopback sink",
                ["path", "records/s", "µs/record", "vs official", "vs floor (time)"], rows)


if __name__ == "__main__":
    main()
