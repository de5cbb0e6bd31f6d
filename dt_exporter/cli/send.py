"""`dt-exporter send`: ship log lines from files or stdin to Dynatrace, then say what happened.

Input: JSON Lines, a JSON array, or plain text (`--format`, default `auto`: per line, a JSON
object is a record, anything else becomes `{"content": line}`); gzip files are read as such.
Records are limited, batched, compressed, retried, split on 413 and counted exactly as the
exporter does (same settings, `DT_*` environment variables). Exit status: 0 every record was
delivered, 1 something was dropped or could not be read, 2 configuration error.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import math
import os
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import IO, Any, Final, TextIO

from dt_exporter import DeliveryStats, ExporterConfig, pipeline
from dt_exporter.errors import ConfigError
from dt_exporter.pipeline import FORMATS, ByteSource, Chunk, InputFormat, read_chunks

#: The CLI waits for queue room instead of evicting; a small queue keeps memory flat (the
#: exporter's default of 64 MB buys nothing when the producer can wait).
QUEUE_BYTES: Final = 16 * 1024 * 1024
#: "Wait for room" without a deadline, yet finite for `Condition.wait`.
_FOREVER_S: Final = 365 * 86_400.0
PROGRESS_INTERVAL_S: Final = 0.25  # at most 4 refreshes a second
_GZIP_MAGIC: Final = b"\x1f\x8b"
#: Chunks handed to the compression thread and not yet taken, at most (memory stays flat).
_COMPRESS_AHEAD: Final = 2
#: The compression thread waits this long for the next chunk before it sends a request that
#: is not full yet: a fast input fills requests, a slow one is not held back.
_PACK_LINGER_S: Final = 0.2
#: Records per input chunk at most (half `read_chunks`' default: a chunk's parsed objects are
#: most of the memory, and whole chunks are packed into requests anyway); see `chunk_records`.
_CHUNK_RECORDS: Final = 10_000

_log = logging.getLogger("dt_exporter")


def add_parser(subparsers: Any, name: str) -> None:
    parser = subparsers.add_parser(
        name,
        help="send log lines (JSON Lines, a JSON array or text; gzip ok) to Dynatrace",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help="files to send, in order; '-' or none: standard input")
    parser.add_argument("--format", choices=FORMATS, default="auto",
                        help="how to read the input (default: auto, per line)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress line (it is shown only when stderr is a terminal)")


def run(args: argparse.Namespace) -> int:
    try:
        config = ExporterConfig.from_env()
    except ConfigError as error:  # its message names the setting, never the token
        print(f"dt-exporter send: configuration error: {error}", file=sys.stderr)
        return 2
    paths: list[str] = args.files or ["-"]
    unreadable = [p for p in paths if p != "-" and not os.path.isfile(p)]
    if unreadable:
        print(f"dt-exporter send: no such file: {', '.join(unreadable)}", file=sys.stderr)
        return 2
    show = sys.stderr.isatty() and not args.quiet
    _log_to_stderr()
    job = SendJob(config, Progress(sys.stderr if show else None))
    try:
        job.send(paths, args.format)
    except KeyboardInterrupt:
        job.stop()
        print(job.summary(), file=sys.stdout)
        return 130
    job.stop()
    print(job.summary(), file=sys.stdout)
    return 0 if job.complete else 1


class SendJob:
    """Reads inputs, batches them as the exporter does and keeps the channel busy."""

    def __init__(self, config: ExporterConfig, progress: Progress) -> None:
        # Lines become JSON log objects, so the JSON route even when the exporter uses OTLP.
        self._config = config = replace(config, protocol="json") if (
            config.protocol != "json") else config
        route = pipeline.log_route(config)
        self._batcher = pipeline.LogBatcher(config, route.name)
        self._channel = pipeline.Channel.for_config(
            config, [route],
            max_queue_bytes=max(min(config.max_queue_bytes, QUEUE_BYTES),
                                config.max_request_bytes + 65_536),
        )
        self._progress = progress
        self._started = time.monotonic()
        self._input_bytes = 0
        self.read_errors: list[str] = []
        # Packing and compression run on their own thread, overlapping the parsing of the next
        # chunks: zlib releases the GIL, so a second core does it. One thread keeps the order.
        self._stopping = threading.Event()
        self._chunks: queue.Queue[pipeline.Encoded | None] = queue.Queue(_COMPRESS_AHEAD)
        self._packer_error: BaseException | None = None
        # A daemon: an unexpected error on the main thread must not leave the process waiting
        # for it at exit.
        self._packer = threading.Thread(target=self._run_packer, daemon=True,
                                        name="dt-exporter-send-gzip")
        self._packer.start()

    def send(self, paths: list[str], fmt: InputFormat) -> None:
        for path in paths:
            try:
                with _open(path) as source:
                    for chunk in read_chunks(source, fmt,
                                             chunk_records=chunk_records(self._config)):
                        self._submit(chunk)
                        if chunk.error:
                            self._read_error(path, chunk.error)
            except (OSError, EOFError, ValueError) as error:  # gzip.BadGzipFile is an OSError
                self._read_error(path, str(error) or type(error).__name__)
        self._hand_over(None)  # the end: what is packed goes out
        self._packer.join()
        if self._packer_error is not None:
            raise self._packer_error
        while not self._channel.flush(PROGRESS_INTERVAL_S):
            self._progress.show(self.stats(), self._input_bytes, self._elapsed())

    def _submit(self, chunk: Chunk) -> None:
        self._hand_over(self._batcher.lines(chunk, time.time_ns()))
        self._input_bytes += chunk.input_bytes
        self._progress.show(self.stats(), self._input_bytes, self._elapsed())

    def _hand_over(self, encoded: pipeline.Encoded | None) -> None:
        """Give a chunk's bodies (None: the end) to the compression thread; wait while it has
        _COMPRESS_AHEAD of them. Its failure is raised here rather than waited on for ever."""
        while self._packer.is_alive():
            try:
                self._chunks.put(encoded, timeout=PROGRESS_INTERVAL_S)
                return
            except queue.Full:
                continue
        if self._packer_error is not None and encoded is not None:
            raise self._packer_error

    def _run_packer(self) -> None:
        try:
            self._pack_and_compress()
        except BaseException as error:  # raised on the main thread by _hand_over / send
            self._packer_error = error

    def _pack_and_compress(self) -> None:
        """The compression thread: gather the bodies of consecutive chunks into one request of
        up to the request limits (`max_request_bytes` uncompressed, `max_records_per_request`),
        then compress and queue it.

        A chunk's body is a fraction of a request (at most 10,000 records: about 1 MB of
        116-byte lines); packed, 1,000,000 such lines take about 25 requests instead of 115,
        and less CPU (fewer compressions and HTTP exchanges). A request that is not full goes
        out when no chunk came for _PACK_LINGER_S (a slow pipe is not held back) and at the
        end. The records, their drops and cuts are those of the chunks; a chunk whose records
        already fill more than one request is compressed as it is.
        """
        cfg = self._config
        pending: list[pipeline.Encoded] = []
        pending_bytes = pending_records = 0

        def flush() -> None:
            nonlocal pending, pending_bytes, pending_records
            if pending:
                self._compress_and_queue(pending[0] if len(pending) == 1
                                         else join_encoded(pending))
            pending, pending_bytes, pending_records = [], 0, 0

        while True:
            try:
                encoded = self._chunks.get(timeout=_PACK_LINGER_S if pending else None)
            except queue.Empty:
                flush()
                continue
            if encoded is None:
                flush()
                return
            requests = encoded.requests
            if len(requests) > 1:
                flush()
                self._compress_and_queue(encoded)
                continue
            if requests:
                data, records = requests[0]
                joined = pending_bytes + len(data) - 1 if pending_bytes else len(data)
                if pending_bytes and (joined > cfg.max_request_bytes or pending_records
                                      + records > cfg.max_records_per_request):
                    flush()
                    joined = len(data)
                pending_bytes = joined
                pending_records += records
            pending.append(encoded)
            if pending_records >= cfg.max_records_per_request:
                flush()

    def _compress_and_queue(self, encoded: pipeline.Encoded) -> None:
        """On the compression thread: wait for room in the queue rather than evict (after
        Ctrl-C: the records count as `shutdown`)."""
        if self._stopping.is_set():
            self._channel.submit(pipeline.Batch.refused(encoded.received, "shutdown"))
            return
        batch = self._batcher.finish(encoded)
        size = sum(body.size for body in batch.bodies)
        while not self._stopping.is_set():  # interruptible: Ctrl-C must not hang here
            if self._channel.wait_for_room(size, PROGRESS_INTERVAL_S):
                self._channel.submit(batch, wait_s=_FOREVER_S)
                return
        self._channel.submit(pipeline.Batch.refused(encoded.received, "shutdown"))

    def _read_error(self, path: str, problem: str) -> None:
        self._progress.clear()
        name = "stdin" if path == "-" else path
        self.read_errors.append(name)
        print(f"dt-exporter send: {name}: {problem}", file=sys.stderr)

    def stop(self) -> None:
        """Stop the channel; what is still queued (only after Ctrl-C) counts as `shutdown`."""
        self._stopping.set()
        self._hand_over(None)  # after Ctrl-C: what is read but not queued counts as `shutdown`
        self._packer.join()
        self._channel.shutdown(0.0 if self.stats().queued_records else 1.0)
        self._progress.clear()

    def stats(self) -> DeliveryStats:
        return self._channel.stats()

    def _elapsed(self) -> float:
        return time.monotonic() - self._started

    @property
    def complete(self) -> bool:
        stats = self.stats()
        return not self.read_errors and stats.delivered == stats.received

    def summary(self) -> str:
        stats, elapsed = self.stats(), self._elapsed()
        rate = stats.received / elapsed if elapsed > 0 else 0.0
        parts = [
            f"{stats.received} records read ({self._input_bytes / 1e6:.1f} MB) in "
            f"{elapsed:.1f} s ({rate:,.0f} records/s)",
            f"delivered {stats.delivered}",
            f"dropped {stats.dropped_total}{_reasons(stats.dropped)}",
            f"truncated {sum(stats.truncated.values())}{_reasons(stats.truncated)}",
            f"requests {stats.requests}",
            f"retries {stats.retries}",
        ]
        if self.read_errors:
            parts.append(f"unreadable input: {', '.join(self.read_errors)}")
        return "dt-exporter send: " + ", ".join(parts)


def chunk_records(config: ExporterConfig) -> int:
    """Records per input chunk: at most 10,000 (memory stays flat), and a whole fraction of
    `max_records_per_request` (the default 50,000: 10,000), so that whole chunks fill a
    request."""
    limit = config.max_records_per_request
    return max(limit // math.ceil(limit / _CHUNK_RECORDS), 1)


def join_encoded(parts: list[pipeline.Encoded]) -> pipeline.Encoded:
    """Consecutive chunks' `Encoded` values (each at most one request body) as one: the bodies'
    JSON arrays joined into one array, the counts added up."""
    datas = [data for part in parts for data, _ in part.requests]
    requests: list[tuple[bytes, int]] = []
    if datas:
        pieces: list[bytes | memoryview] = [b"["]
        for data in datas:  # each a compact JSON array with at least one element
            pieces += (memoryview(data)[1:-1], b",")
        pieces[-1] = b"]"
        requests.append((b"".join(pieces), sum(n for part in parts for _, n in part.requests)))
    dropped: Counter[str] = Counter()
    truncated: Counter[str] = Counter()
    for part in parts:
        dropped.update(part.dropped)
        truncated.update(part.truncated)
    return pipeline.Encoded(
        sum(part.received for part in parts), requests,
        min((part.oldest_ns for part in parts if part.oldest_ns), default=0),
        dropped, truncated,
    )


def _reasons(counts: Any) -> str:
    shown = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()) if n)
    return f" ({shown})" if shown else ""


class Progress:
    """One status line on a terminal, refreshed at most every PROGRESS_INTERVAL_S."""

    def __init__(self, out: TextIO | None) -> None:
        self._out = out
        self._last = 0.0
        self._lock = threading.Lock()
        self._shown = False

    def show(self, stats: DeliveryStats, input_bytes: int, elapsed_s: float) -> None:
        if self._out is None:
            return
        now = time.monotonic()
        with self._lock:
            if now - self._last < PROGRESS_INTERVAL_S:
                return
            self._last = now
            rate = stats.received / elapsed_s if elapsed_s > 0 else 0.0
            self._out.write(
                f"\r\x1b[K{stats.received:,} records  {input_bytes / 1e6:,.1f} MB  "
                f"{rate:,.0f} records/s  delivered {stats.delivered:,}"
                + (f"  dropped {stats.dropped_total:,}" if stats.dropped_total else "")
            )
            self._out.flush()
            self._shown = True

    def clear(self) -> None:
        if self._out is not None and self._shown:
            with self._lock:
                self._out.write("\r\x1b[K")
                self._out.flush()
                self._shown = False


@contextmanager
def _open(path: str) -> Iterator[ByteSource]:
    """A file or stdin as bytes; gzip (by `.gz` or by its magic bytes) decompressed."""
    raw: IO[bytes]
    raw = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    try:
        peek = getattr(raw, "peek", None)
        head = peek(2)[:2] if peek is not None else b""
        if path.endswith(".gz") or head == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield unzipped
        else:
            yield raw
    finally:
        if raw is not sys.stdin.buffer:
            raw.close()


def _log_to_stderr() -> None:
    """The sender's warnings (a 400, a retry) as plain lines on stderr."""
    if not _log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        _log.addHandler(handler)
        _log.setLevel(logging.WARNING)
        _log.propagate = False
