"""`dt-exporter send` on a tailed-log-like file: lines/s and peak RSS, next to Fluent Bit.

Generates BENCH_LINES (default 1,000,000) lines of 116 bytes (90 % plain text, 10 % JSON
objects with a current timestamp) in a temp dir, then runs `python -m dt_exporter send FILE` as a
subprocess against a loopback server in a separate process and checks that every line arrived.

Servers (BENCH_SINKS, comma separated, default "counting,emulator"):
- `counting`: a minimal sink that gunzips each body and counts its records (each generated line
  carries `seq` exactly once), nothing else;
- `emulator`: the `DynatraceEmulator` (it interprets every record as Dynatrace would, so it is
  much slower per record than the sender: its row shows when the emulator is the bottleneck).

Peak RSS is the send process's own `ru_maxrss` (from `os.wait4`, so the server process, also a
child of this one, cannot pollute it). Fluent Bit reference (tail -> http, gzip, same machine
class, 2 cores): 590,000 lines/s, 181 MB peak RSS.
"""

from __future__ import annotations

import http.server
import multiprocessing as mp
import os
import random
import subprocess
import sys
import tempfile
import time
import zlib
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

LINES = int(os.environ.get("BENCH_LINES", "1000000"))
SINKS = os.environ.get("BENCH_SINKS", "counting,emulator").split(",")
#: Runs per sink; the table shows the best and the median (the machine may be shared).
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
LINE_BYTES = 116
FLUENT_BIT_LINES_S = 590_000
FLUENT_BIT_RSS_MB = 181
TOKEN = "dt0c01." + "B" * 24 + "." + "C" * 64
REPO = Path(__file__).resolve().parents[1]


def write_log(path: Path, lines: int, seed: int = 7) -> None:
    """A tailed application log: text lines, with every tenth line a JSON object."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    levels = ("INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG")
    with path.open("w", encoding="utf-8") as out:
        batch: list[str] = []
        for i in range(lines):
            level = levels[i % len(levels)]
            if i % 10 == 9:
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
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    while conn.recv() == "count":
        conn.send(_CountingSink.records)


def _serve_emulator(conn: Connection) -> None:
    from dt_exporter.testing import DynatraceEmulator

    with DynatraceEmulator(token=TOKEN, max_history=1) as emulator:
        conn.send(emulator.url)
        while conn.recv() == "count":
            conn.send(emulator._record_total)


def run_send(path: Path, sink: str) -> dict[str, Any]:
    parent, child = mp.Pipe()
    target = _serve_counting if sink == "counting" else _serve_emulator
    server = mp.Process(target=target, args=(child,), daemon=True)
    server.start()
    try:
        url = parent.recv()
        env = {**os.environ, "DT_ENDPOINT": url, "DT_API_TOKEN": TOKEN}
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "dt_exporter", "send", "--quiet", str(path)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None
        stdout, stderr = process.stdout.read(), process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        parent.send("count")
        received = parent.recv()
        parent.send("stop")
    finally:
        server.terminate()
        server.join(5)
    return {
        "sink": sink, "wall": wall, "exit": process.returncode, "received": received,
        "rss_mb": usage.ru_maxrss / 1024, "summary": stdout.decode().strip(),
        "stderr": stderr.decode().strip(),
    }


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "app.log"
        write_log(path, LINES)
        size = path.stat().st_size
        print(f"input: {LINES:,} lines, {size / 1e6:.1f} MB ({size / LINES:.0f} bytes/line)")
        rows, ok = [], True
        for sink in SINKS:
            results = []
            for _ in range(REPEAT):
                result = run_send(path, sink)
                results.append(result)
                print(f"{sink}: exit {result['exit']}, {result['summary']}")
                if result["stderr"]:
                    print(f"{sink} stderr: {result['stderr'][:500]}")
            delivered = all(r["received"] == LINES and r["exit"] == 0 for r in results)
            ok &= delivered
            walls = sorted(r["wall"] for r in results)
            best, median = walls[0], walls[len(walls) // 2]
            rows.append([
                f"dt-exporter send → {sink} sink",
                f"{LINES / best:,.0f} (median {LINES / median:,.0f})",
                f"{best:.2f} (median {median:.2f})",
                f"{max(r['rss_mb'] for r in results):.0f}",
                f"{min(r['received'] for r in results):,} / {LINES:,}"
                + ("" if delivered else " **MISSING**"),
            ])
    rows.append(["Fluent Bit tail → http (gzip), reference", f"{FLUENT_BIT_LINES_S:,}",
                 f"{1_000_000 / FLUENT_BIT_LINES_S:.2f} (1M lines)", f"{FLUENT_BIT_RSS_MB}",
                 "—"])
    print(f"\n### dt-exporter send, {LINES:,} lines of {LINE_BYTES} bytes, {os.cpu_count()} CPUs\n")
    print(f"Best and median of {REPEAT} runs; wall time includes interpreter start-up.\n")
    print("| run | lines/s | wall s | peak RSS MB | delivered |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
