"""dt_exporter._otlp.encode_log_requests against the official OTLP encoder, in one run.

Records: `_common.make_records`, the reference recipe (see `_common`'s docstring,
section 6), cut into batches of 512 as the BLRP makes them. The two encoders take turns, so load
on the machine hits both alike.

Run:   .venv/bin/python benchmarks/bench_otlp_encoder.py
       BENCH_N=10000 BENCH_REPEAT=3 .venv/bin/python benchmarks/bench_otlp_encoder.py
"""

from __future__ import annotations

import collections
import importlib.metadata
import os
import platform
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from _common import BATCH, REPEAT, N, batches, best_of, make_records, print_table
from google.protobuf.internal import api_implementation
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import ReadableLogRecord

from dt_exporter._otlp import encode_log_requests
from dt_exporter.limits import GRAIL

T = TypeVar("T")


def best_in_turns(fns: Sequence[Callable[[], T]], repeat: int = REPEAT) -> list[tuple[float, T]]:
    """Best seconds and last result of each fn, taking turns so load hits all of them alike."""
    best = [float("inf")] * len(fns)
    results: list[T] = []
    for _ in range(repeat):
        results = []
        for i, fn in enumerate(fns):
            seconds, result = best_of(fn, repeat=1)
            best[i] = min(best[i], seconds)
            results.append(result)
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
    chunks = batches(make_records(N))

    (first,) = ours(chunks[:1])
    reference = encode_logs(chunks[0])
    print(f"# first batch: decoded messages equal: "
          f"{ExportLogsServiceRequest.FromString(first) == reference}; "
          f"bytes identical: {first == reference.SerializeToString()}")

    names = ("official encode_logs(batch).SerializeToString()",
             "dt_exporter._otlp.encode_log_requests")
    timings = best_in_turns([lambda: official(chunks), lambda: ours(chunks)])
    rows = [(name, secs, sum(map(len, payloads)))
            for name, (secs, payloads) in zip(names, timings, strict=True)]

    print_table(f"OTLP encoding, {N:,} records in batches of {BATCH}",
                ["encoder", "µs/record", "records/s", "bytes", "B/record"],
                [[name, f"{secs * 1e6 / N:.2f}", f"{N / secs:,.0f}", f"{size:,}", f"{size / N:.0f}"]
                 for name, secs, size in rows])
    print(f"\nspeed-up: {rows[0][1] / rows[1][1]:.1f}x")


if __name__ == "__main__":
    main()
