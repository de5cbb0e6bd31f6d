"""`dt-exporter send` on 1,000,000 log lines: lines/s, CPU seconds and peak RSS, measured.

Two inputs of BENCH_LINES (default 1,000,000) lines of 116 bytes each, generated in a temp dir:
- `text-heavy`: a tailed application log, 90 % plain text, every tenth line a JSON object;
- `all-JSON`: every line a JSON object with `timestamp`, `level`, `seq`, `message` and a pad
  field (the path users with structured logs take: each line is parsed, mapped, its timestamp
  read for the 24 h filter).
Every line has its own timestamp, one millisecond after the previous line's (the last line is
"now"), so no cache sees one value a million times.

Each run is `python -m dt_exporter send --quiet FILE` as a subprocess (interpreter start-up
included) against a loopback sink in another process, which gunzips each body and counts its
records (every line carries `seq` exactly once); a run that does not deliver every line, or
exits non-zero, fails the benchmark. Per run: wall time, the send process's CPU time (user +
system, all its threads) and its peak RSS (`ru_maxrss` from `os.wait4`: the sink, also a child of
this process, cannot pollute it). The table shows the median of BENCH_REPEAT (default 3) runs.

BENCH_BASELINE=/path/to/another/checkout adds rows for that checkout's `send` (run from its
directory, so its `dt_exporter` is the one imported), alternating run by run with this one: a
before/after comparison measured in one run, on one machine state.

Fluent Bit cannot be installed here, so its figures are QUOTED, not measured: they are printed in
a separate table with their source (issue 18, measured on a real Fluent Bit 5.1.1 with the
project's settings, same file shape and sink, same machine class, medians of 3).

Run: python benchmarks/bench_send.py    (BENCH_LINES, BENCH_REPEAT, BENCH_BASELINE)
"""

from __future__ import annotations

import http.server
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from datetime import datetime, timedelta, timezone
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

LINES = int(os.environ.get("BENCH_LINES", "1000000"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
BASELINE = os.environ.get("BENCH_BASELINE", "")
LINE_BYTES = 116
TOKEN = "dt0c01." + "B" * 24 + "." + "C" * 64
REPO = Path(__file__).resolve().parents[1]
MIXES = ("text-heavy", "all-JSON")

#: Quoted from issue 18 ("`send` vs Fluent Bit, same file, same sink, alternating, medians of
#: 3", 1,000,000 lines): Fluent Bit 5.1.1, release build, with the project's settings (tail ->
#: http, gzip). Not measured by this script: no Fluent Bit binary can be installed here.
QUOTED_FLUENT_BIT = {
    # mix: (lines/s, CPU s per 1M lines, peak RSS MB)
    "text-heavy": (159_185, 7.5, 99),
    "all-JSON": (187_371, 6.0, 98),
}
QUOTED_SOURCE = "issue 18, item 7 (Fluent Bit 5.1.1, project settings, medians of 3)"


def write_log(path: Path, lines: int, json_every: int = 10, seed: int = 7) -> None:
    """`lines` lines of LINE_BYTES bytes; every `json_every`-th line a JSON object (1: all of
    them), the others text. Line i's timestamp is 1 ms after line i-1's; the last one is now."""
    rng = random.Random(seed)
    start = datetime.now(timezone.utc) - timedelta(milliseconds=lines)
    levels = ("INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG")
    with path.open("w", encoding="utf-8") as out:
        batch: list[str] = []
        for i in range(lines):
            level = levels[i % len(levels)]
            now = (start + timedelta(milliseconds=i)).isoformat(timespec="milliseconds")
            if i % json_every == json_every - 1:
                line = orjson.dumps({"timestamp": now, "level": level, "seq": i,
                                     "message": f"order {rng.randint(1, 999999)} shipped"}
                                    ).decode()
                line = line[:-1] + ',"pad":"' + "x" * max(LINE_BYTES - len(line) - 10, 0) + '"}'
            else:
                line = (f"{now} {level:<5} [worker-{i % 8}] GET /api/v1/orders/"
                        f"{rng.randint(100000, 999999)} 200 {rng.uniform(1, 99):.1f}ms seq={i} ")
                line += "x" * (LINE_BYTES - 1 - len(line))
            batch.append(line)
            if len(batch) == 10_000:
                out.write("\n".join(batch) + "\n")
                batch = []
        if batch:
            out.write("\n".join(batch) + "\n")


class _CountingSink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    records = 0

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            data = zlib.decompress(data, 31)
        # Every generated line holds "seq" exactly once (text: seq=N, JSON: "seq":N): counting
        # it is exact for this input and far cheaper than parsing, so the sink keeps up.
        _CountingSink.records += data.count(b"seq")
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _serve_counting(conn: Connection) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _CountingSink)
    conn.send(f"http://127.0.0.1:{server.server_address[1]}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    while conn.recv() == "count":
        conn.send(_CountingSink.records)
        _CountingSink.records = 0


def run_send(path: Path, checkout: Path, url: str, conn: Connection) -> dict[str, Any]:
    """One `send` of `path` with `checkout`'s code; the sink's count is read and reset after."""
    env = {**os.environ, "DT_ENDPOINT": url, "DT_API_TOKEN": TOKEN}
    env.pop("PYTHONPATH", None)
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "dt_exporter", "send", "--quiet", str(path)],
        cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    stdout, stderr = process.stdout.read(), process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    conn.send("count")
    received = conn.recv()
    return {
        "wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024,
        "exit": os.waitstatus_to_exitcode(status), "received": received,
        "summary": stdout.decode().strip(), "stderr": stderr.decode().strip(),
    }


def main() -> int:
    checkouts = {"this checkout": REPO}
    if BASELINE:
        checkouts = {f"baseline ({BASELINE})": Path(BASELINE).resolve(), **checkouts}
    parent, child = mp.Pipe()
    server = mp.Process(target=_serve_counting, args=(child,), daemon=True)
    server.start()
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    ok = True
    try:
        url = parent.recv()
        with tempfile.TemporaryDirectory() as tmp:
            for mix in MIXES:
                path = Path(tmp) / f"{mix}.log"
                write_log(path, LINES, json_every=10 if mix == "text-heavy" else 1)
                size = path.stat().st_size
                print(f"{mix}: {LINES:,} lines, {size / 1e6:.1f} MB ({size / LINES:.0f} B/line)")
                for _ in range(REPEAT):  # alternating, so a busy moment hits both alike
                    for name, checkout in checkouts.items():
                        result = run_send(path, checkout, url, parent)
                        results.setdefault((mix, name), []).append(result)
                        good = result["exit"] == 0 and result["received"] == LINES
                        ok &= good
                        print(f"  {name}: {result['wall']:.2f} s wall, {result['cpu']:.2f} s CPU,"
                              f" {result['rss_mb']:.0f} MB, received {result['received']:,}"
                              + ("" if good else f" **FAILED** exit {result['exit']}"))
                        if not good:
                            print(f"    {result['summary']}\n    {result['stderr'][:500]}")
                path.unlink()
        parent.send("stop")
    finally:
        server.terminate()
        server.join(5)

    print(f"\n### Measured: `dt-exporter send`, {LINES:,} lines of {LINE_BYTES} B, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")
    print(f"Medians of {REPEAT} runs; wall time includes interpreter start-up; CPU is user + "
          "system of the send process, all threads.\n")
    print("| input | code | lines/s | CPU s per 1M lines | peak RSS MB | delivered |")
    print("|---|---|---:|---:|---:|---:|")
    medians: dict[tuple[str, str], tuple[float, float, float]] = {}
    for (mix, name), runs in results.items():
        wall = statistics.median(r["wall"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs) * 1_000_000 / LINES
        rss = statistics.median(r["rss_mb"] for r in runs)
        medians[mix, name] = (LINES / wall, cpu, rss)
        delivered = min(r["received"] for r in runs)
        print(f"| {mix} | {name} | {LINES / wall:,.0f} | {cpu:.2f} | {rss:.0f} | "
              f"{delivered:,} / {LINES:,} |")

    print("\n### Quoted, NOT measured here: Fluent Bit\n")
    print(f"Source: {QUOTED_SOURCE}. The ratio column divides this run's measured median "
          "(this checkout) by the quoted figure: two different runs, read it as a rough guide.\n")
    print("| input | Fluent Bit lines/s | CPU s per 1M lines | peak RSS MB | "
          "send ÷ Fluent Bit (lines/s, CPU, RSS) |")
    print("|---|---:|---:|---:|---:|")
    for mix, (rate, cpu, rss) in QUOTED_FLUENT_BIT.items():
        ours = medians.get((mix, "this checkout"))
        ratio = (f"{ours[0] / rate:.2f}×, {ours[1] / cpu:.2f}×, {ours[2] / rss:.2f}×"
                 if ours else "—")
        print(f"| {mix} | {rate:,} | {cpu:.1f} | {rss} | {ratio} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
