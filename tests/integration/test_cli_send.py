"""`python -m dt_exporter send` in a real subprocess against the Dynatrace emulator."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dt_exporter.testing import DynatraceEmulator, Reply

REPO = Path(__file__).resolve().parents[2]


def send(
    dt: DynatraceEmulator, *args: str, stdin: bytes | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `dt-exporter send` pointed at the emulator; fail the test if it hangs."""
    result = subprocess.run(
        [sys.executable, "-m", "dt_exporter", "send", *args],
        cwd=REPO,
        input=stdin.decode("utf-8", "surrogateescape") if stdin is not None else None,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="surrogateescape",
        timeout=120,
        env={**os.environ, "DT_ENDPOINT": dt.url, "DT_API_TOKEN": dt.token,
             "DT_EXPORTER_BACKOFF_INITIAL": "0.01", "DT_EXPORTER_BACKOFF_MAX": "0.05", **env},
    )
    assert dt.token not in result.stdout + result.stderr
    return result


def mixed_lines(count: int) -> list[str]:
    """Text and JSON lines, each with a unique id (`t-N` in text, `id` in JSON)."""
    lines = []
    for i in range(count):
        if i % 3 == 0:
            lines.append(json.dumps({"id": f"j-{i}", "message": f"json record {i}",
                                     "level": "warn", "http": {"status": 200 + i % 5}}))
        else:
            lines.append(f"2024-05-01 12:00:00 INFO text record t-{i} ünïcödé")
    return lines


def arrived_ids(dt: DynatraceEmulator) -> list[str]:
    ids = []
    for record in dt.records:
        if "id" in record.attributes:
            ids.append(record.attributes["id"])
        else:
            ids.append(record.content.split()[5])
    return ids


def test_every_line_of_a_large_mixed_file_arrives(
    dynatrace: DynatraceEmulator, tmp_path: Path
) -> None:
    """20,000 mixed lines: every one arrives once, JSON as objects, text as content; exit 0."""
    lines = mixed_lines(20_000)
    path = tmp_path / "app.log"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = send(dynatrace, str(path))
    assert result.returncode == 0, result.stderr
    ids = arrived_ids(dynatrace)
    assert len(ids) == 20_000
    assert sorted(ids) == sorted(f"j-{i}" if i % 3 == 0 else f"t-{i}" for i in range(20_000))
    json_record = next(r for r in dynatrace.records if r.attributes.get("id") == "j-3")
    assert json_record.content == "json record 3"
    assert json_record.loglevel == "WARN"
    assert json_record.attributes["http.status"] == 203
    assert "20000 records read" in result.stdout
    assert "delivered 20000" in result.stdout
    assert "dropped 0" in result.stdout


def test_stdin_dash_delivers_ndjson(dynatrace: DynatraceEmulator) -> None:
    """`send -` reads standard input; NDJSON lines arrive as records (reliability F34)."""
    data = "".join(json.dumps({"content": f"from stdin {i}", "seq": i}) + "\n" for i in range(50))
    result = send(dynatrace, "-", stdin=data.encode())
    assert result.returncode == 0, result.stderr
    assert sorted(r.attributes["seq"] for r in dynatrace.records) == list(range(50))


def test_epoch_nanoseconds_arrive_as_the_moment_they_mean(dynatrace: DynatraceEmulator) -> None:
    """A 19-digit `timestamp` (epoch ns, which Dynatrace does not read: it would stamp the
    record with the ingest time) is sent as epoch ms; s, ms and µs go as they are."""
    now_ns = time.time_ns()
    stamps = {"ns": now_ns, "ms": now_ns // 1_000_000, "s": now_ns // 1_000_000_000}
    data = "".join(json.dumps({"content": unit, "timestamp": value}) + "\n"
                   for unit, value in stamps.items())
    result = send(dynatrace, "-", stdin=data.encode())
    assert result.returncode == 0, result.stderr
    sent = {obj["content"]: obj["timestamp"]
            for request in dynatrace.requests for obj in json.loads(request.body)}
    assert sent == {"ns": now_ns // 1_000_000, "ms": now_ns // 1_000_000,
                    "s": now_ns // 1_000_000_000}
    read = {r.content: r.timestamp for r in dynatrace.records}
    assert read["ns"] == read["ms"] == now_ns // 1_000_000


def test_gzip_file_and_invalid_utf8(dynatrace: DynatraceEmulator, tmp_path: Path) -> None:
    """A .gz file is decompressed; bytes that are not UTF-8 arrive as U+FFFD."""
    path = tmp_path / "app.log.gz"
    path.write_bytes(gzip.compress(b"caf\xe9 au lait\nsecond\n"))
    result = send(dynatrace, str(path))
    assert result.returncode == 0, result.stderr
    assert sorted(r.content for r in dynatrace.records) == ["caf\ufffd au lait", "second"]


def test_permanent_400_exits_1_with_reason_counts(
    dynatrace: DynatraceEmulator, tmp_path: Path
) -> None:
    """The emulator answers 400: those records are dropped, counted by reason, exit 1."""
    path = tmp_path / "app.log"
    path.write_text("".join(f"line {i}\n" for i in range(10)), encoding="utf-8")
    dynatrace.enqueue("logs", Reply(400))
    result = send(dynatrace, str(path))
    assert result.returncode == 1
    assert "dropped 10 (http_400 10)" in result.stdout
    assert "delivered 0" in result.stdout
    assert "400" in result.stderr  # the sender's one log line says what happened


def test_413_split_still_delivers_everything(
    dynatrace: DynatraceEmulator, tmp_path: Path
) -> None:
    """With a small server limit every body is answered 413, split, and finally delivered."""
    dynatrace.max_request_bytes = 20_000
    path = tmp_path / "app.log"
    path.write_text("".join(f"record number {i} " + "x" * 80 + "\n" for i in range(2000)),
                    encoding="utf-8")
    result = send(dynatrace, str(path), DT_EXPORTER_COMPRESSION="none")
    assert result.returncode == 0, result.stdout + result.stderr
    statuses = [r.status for r in dynatrace.requests]
    assert 413 in statuses
    contents = sorted(r.content for r in dynatrace.records)
    assert contents == sorted(f"record number {i} " + "x" * 80 for i in range(2000))
    assert "delivered 2000" in result.stdout


def test_too_old_json_records_are_counted_not_sent(
    dynatrace: DynatraceEmulator, tmp_path: Path
) -> None:
    """Records older than 24 h (minus the margin) are dropped as too_old; the rest arrive."""
    now = time.time()
    old = {"timestamp": int((now - 25 * 3600) * 1000), "content": "too old"}
    edge = {"timestamp": int((now - 24 * 3600 + 60) * 1000), "content": "inside margin"}
    fresh = {"@timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
             "content": "fresh"}
    lines = [json.dumps(old), json.dumps(edge), json.dumps(fresh), "plain text"]
    path = tmp_path / "app.log"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = send(dynatrace, str(path))
    assert result.returncode == 1
    assert "dropped 2 (too_old 2)" in result.stdout
    assert sorted(r.content for r in dynatrace.records) == ["fresh", "plain text"]


def test_json_array_file(dynatrace: DynatraceEmulator, tmp_path: Path) -> None:
    """A file holding one JSON array sends each element as a record."""
    path = tmp_path / "records.json"
    path.write_text(json.dumps([{"content": f"element {i}"} for i in range(300)], indent=1),
                    encoding="utf-8")
    result = send(dynatrace, str(path))
    assert result.returncode == 0, result.stderr
    assert len(dynatrace.records) == 300


def test_configuration_error_exits_2_without_the_token(tmp_path: Path) -> None:
    """A bad setting exits 2 and names the variable; the token is never printed."""
    token = "dt0c01." + "C" * 24 + "." + "S" * 64
    result = subprocess.run(
        [sys.executable, "-m", "dt_exporter", "send", "-"],
        cwd=REPO, input="", capture_output=True, text=True, timeout=60,
        env={**os.environ, "DT_ENDPOINT": "ftp://example.com", "DT_API_TOKEN": token},
    )
    assert result.returncode == 2
    assert "DT_ENDPOINT" in result.stderr
    assert "S" * 64 not in result.stdout + result.stderr


def test_missing_file_exits_2(dynatrace: DynatraceEmulator) -> None:
    """A file that does not exist is reported before anything is sent."""
    missing = "does-not-exist.log"
    result = send(dynatrace, missing)
    assert result.returncode == 2
    assert missing in result.stderr
    assert dynatrace.requests == []


def json_lines(count: int, *, now: float) -> list[str]:
    """JSON log lines as structured loggers write them, each with its own `seq` and time."""
    start = now - count / 1000
    return [json.dumps({"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(
        start + i / 1000)) + f".{i % 1000:03d}+00:00", "level": "warn", "seq": i,
        "message": f"order {i} shipped"}) for i in range(count)]


def test_json_lines_are_packed_into_full_requests(
    dynatrace: DynatraceEmulator, tmp_path: Path
) -> None:
    """Chunks of JSON lines (at most 6,000 records each here: a whole fraction of the limit)
    are joined into requests of up to max_records_per_request records; every line arrives
    once, mapped as the exporter maps it."""
    path = tmp_path / "app.log"
    path.write_text("\n".join(json_lines(25_000, now=time.time())) + "\n", encoding="utf-8")
    result = send(dynatrace, str(path), DT_EXPORTER_MAX_RECORDS_PER_REQUEST="12000")
    assert result.returncode == 0, result.stdout + result.stderr
    bodies = [json.loads(request.body) for request in dynatrace.requests]
    assert max(len(body) for body in bodies) <= 12_000
    assert len(bodies) <= 4  # unpacked: at least ceil(25,000 / 6,000) = 5 requests
    assert sorted(obj["seq"] for body in bodies for obj in body) == list(range(25_000))
    first = json.loads(path.read_text(encoding="utf-8").split("\n", 1)[0])
    assert list(bodies[0][0].items()) == [("level", "warn"), ("seq", 0),
                                          ("message", "order 0 shipped"),
                                          ("timestamp", first["timestamp"])]
    assert "25000 records read" in result.stdout
    assert "delivered 25000" in result.stdout
    assert f"requests {len(bodies)}," in result.stdout


def test_packing_keeps_to_the_request_byte_limit(
    dynatrace: DynatraceEmulator, tmp_path: Path
) -> None:
    """Chunks are joined only while the request stays within max_request_bytes."""
    path = tmp_path / "app.log"
    path.write_text("".join(f"line {i:06d} " + "x" * 40 + "\n" for i in range(30_000)),
                    encoding="utf-8")
    result = send(dynatrace, str(path), DT_EXPORTER_MAX_REQUEST_BYTES="1400000")
    assert result.returncode == 0, result.stdout + result.stderr
    sizes = [len(request.body) for request in dynatrace.requests]
    assert len(sizes) == 2 and max(sizes) <= 1_400_000  # 2 chunks of 670 kB, then 1
    assert sorted(r.content for r in dynatrace.records) == [
        f"line {i:06d} " + "x" * 40 for i in range(30_000)]


def test_drops_of_packed_chunks_are_all_counted(
    dynatrace: DynatraceEmulator, tmp_path: Path
) -> None:
    """Invalid and too-old lines spread over the chunks of packed requests are each counted
    once by reason; every other line arrives."""
    now = time.time()
    lines = json_lines(25_000, now=now)
    stale = json.dumps({"timestamp": int((now - 25 * 3600) * 1000), "content": "too old"})
    for i in range(0, 25_000, 1000):
        lines[i] = "{not json"
        lines[i + 500] = stale
    path = tmp_path / "app.log"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = send(dynatrace, "--format", "jsonl", str(path))
    assert result.returncode == 1
    assert "dropped 50 (invalid_json 25, too_old 25)" in result.stdout
    assert "delivered 24950" in result.stdout
    assert len(dynatrace.records) == 24_950


def test_join_encoded_adds_up_the_parts() -> None:
    """Joined chunks: one JSON array of all their objects, in order; received, drops, cuts
    added up; the oldest known timestamp kept."""
    from dt_exporter.cli.send import join_encoded
    from dt_exporter.pipeline import Encoded

    parts = [
        Encoded(3, [(b'[{"a":1},{"a":2}]', 2)], 5_000, {"too_old": 1}, {"value": 1}),
        Encoded(1, [], 0, {"invalid_json": 1}),
        Encoded(2, [(b'[{"a":3}]', 1)], 4_000, {"too_old": 1}),
    ]
    joined = join_encoded(parts)
    assert joined.requests == [(b'[{"a":1},{"a":2},{"a":3}]', 3)]
    assert (joined.received, joined.oldest_ns) == (6, 4_000)
    assert dict(joined.dropped) == {"too_old": 2, "invalid_json": 1}
    assert dict(joined.truncated) == {"value": 1}
    assert join_encoded([Encoded(1, [], 0, {"too_old": 1})]).requests == []


def send_into_an_open_pipe(dynatrace: DynatraceEmulator) -> subprocess.Popen[bytes]:
    """`send -` with 22,000 lines (2.2 MB: one whole 2 MB block, and some more) written to its
    standard input, which stays open."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dt_exporter", "send", "-"], cwd=REPO,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "DT_ENDPOINT": dynatrace.url, "DT_API_TOKEN": dynatrace.token},
    )
    assert process.stdin is not None
    process.stdin.write(b"".join(b"line %08d " % i + b"x" * 84 + b"\n" for i in range(22_000)))
    process.stdin.flush()
    return process


def test_records_of_an_open_pipe_are_sent_before_it_ends(dynatrace: DynatraceEmulator) -> None:
    """Lines from a pipe that stays open go out once their block (2 MB) is read, within a
    moment: packing chunks into requests never holds them until more input or the end."""
    process = send_into_an_open_pipe(dynatrace)
    try:
        dynatrace.wait_for_records(20_000, timeout=30)
    finally:
        try:
            stdout, stderr = process.communicate(timeout=60)  # closes stdin: the input ends
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
    assert process.returncode == 0, stderr
    assert b"delivered 22000" in stdout
    assert len(dynatrace.records) == 22_000


def test_ctrl_c_exits_130_with_every_read_record_accounted(dynatrace: DynatraceEmulator) -> None:
    """Ctrl-C while the input is still open: exit 130 at once, and the summary accounts for
    every record read (delivered or dropped by reason), none left with the packing thread."""
    process = send_into_an_open_pipe(dynatrace)
    try:
        dynatrace.wait_for_records(20_000, timeout=30)  # the first block is through
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    summary = stdout.decode()
    read = int(summary.split(" records read")[0].rsplit(" ", 1)[-1])
    delivered = int(summary.split("delivered ")[1].split(",")[0])
    dropped = int(summary.split("dropped ")[1].split(" ")[0].rstrip(","))
    assert read >= 20_000
    assert read == delivered + dropped
    assert len(dynatrace.records) == delivered
