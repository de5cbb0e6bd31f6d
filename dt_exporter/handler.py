"""`DynatraceHandler`: stdlib `logging` straight to Dynatrace, no OpenTelemetry logs SDK between.

A `logging.Handler` that turns each `logging.LogRecord` into the Dynatrace JSON log object the
exporter path (OpenTelemetry's `LoggingHandler` → SDK `LogRecord` → `DynatraceLogExporter`)
makes for the same call: the same mapping rules, limits, severity table and accounting (the
handler composes `mapping.RecordMapper`'s own pieces; a test holds its output to `map()`'s for
the same call), the trace and span ids of the span current at the call, and the resource from
OpenTelemetry's detection (`Resource.create()`) or given, with Dynatrace's enrichment merged
under it. It hands the objects to the same batcher
(`LogBatcher.objects`) and the same delivery channel (`_channel.Channel`, JSON route).

The application's thread (`emit`) does only what cannot wait:
- the message is formatted there (`record.getMessage()`, or the handler's formatter): `args`
  may be mutable, lazy (translation proxies, ORM objects) or bound to that thread's state, so
  `str()` of them later, on another thread, could say something else or fail. The stdlib's
  `QueueHandler.prepare()` decides the same;
- the OpenTelemetry context current there (`opentelemetry.context.get_current()`), whose span
  gives the record its trace and span ids: it is a context variable of that thread. A context
  is an immutable snapshot, so the worker reading `trace.get_current_span(context)
  .get_span_context()` from it gets what the call site would have; it does so once per
  context, as consecutive records share theirs (cheaper than asking for every record);
- the fields the mapping needs (logger name, level, `created`, `exc_info`) and the attributes
  (the record's fields that are not `LogRecord`'s own: `extra`, a record factory's), a
  shallow copy, go into a bounded in-memory buffer as one tuple (an append, no lock), and the
  `LogRecord` itself is not kept. Measured, that is cheaper in total than keeping the record
  for the worker to read: a record that waits survives collections of the garbage collector,
  which walks it (its dict, its `args`) again and again, and its memory cannot be reused while
  it is hot. A mutable value passed in `extra` and changed right after the call shows its
  later state (scalars, the usual case, cannot change). Full (`max_buffered_records`): the
  oldest buffered record is dropped and counted `queue_full`. It never blocks and never
  raises into `logging`.
The traceback of `exc_info` is formatted on the worker.

The worker (one per handler and process, started by the first record, restarted in a forked
child) wakes every half second, or at once when 2,048 records wait, maps them, serialises,
compresses and submits them to the channel, whose sender thread delivers them. Where no
thread can start (interpreter exit on Python 3.12+), `flush()` and `close()` do that work on
the calling thread, within their deadline.

`flush(timeout_s=30)` returns when everything emitted before it is delivered or dropped (True)
or the time is up (False). `close()` stops accepting records, delivers what is buffered within
`DT_EXPORTER_SHUTDOWN_TIMEOUT`, and stops; `logging.shutdown()` (at interpreter exit) calls only
`close()` (`flushOnClose` is False), so exit never waits longer than that. Records emitted after
`close()` count as `already_shutdown`. `stats()` is balanced: records in the handler's buffer
count as queued.

Never handled: records of the `dt_exporter` loggers (the library's own lines) and of `urllib3`
(the transport's; the handler cannot tell the application's apart). They are refused as a
filter would refuse them, before they count as received, as the exporter path's filter
(`_selflog`) does: nothing the handler causes loops back into it, and `stats()` counts the
application's records only.

Configured like the exporter: keyword settings are `ExporterConfig`'s names and win over the
environment. Bad keyword settings raise `ConfigError`; from the environment alone, the handler
logs one error and counts every record as `misconfigured`. JSON only: `protocol="otlp"` by
keyword raises `ConfigError`; `DT_EXPORTER_PROTOCOL=otlp` in the environment (meant for the
exporter) is logged once and the handler sends JSON log ingest to the same endpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
import traceback
import zlib
from collections import Counter, deque
from types import MappingProxyType
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from dt_exporter import _enrichment, _forks, _routes
from dt_exporter._batching import Encoded, LogBatcher
from dt_exporter._channel import Channel, ShutdownReport
from dt_exporter._payload import Batch, Body, Encoding
from dt_exporter._stats import DeliveryStats
from dt_exporter.config import ExporterConfig
from dt_exporter.errors import ConfigError
from dt_exporter.exporter import DynatraceLogExporter
from dt_exporter.limits import MAX_RECORD_AGE_NS, STALE_MARGIN_NS
from dt_exporter.mapping import LEVEL_BY_SEVERITY, JsonObject, RecordMapper, loglevel_for

__all__ = ["DynatraceHandler"]

_log = logging.getLogger(__name__)
_current_context: Final = otel_context.get_current

#: `LogRecord` fields that are not attributes: OpenTelemetry's `LoggingHandler` list
#: (opentelemetry-instrumentation-logging 0.66, `_RESERVED_ATTRS`), so both paths agree.
RECORD_FIELDS: Final = frozenset((
    "asctime", "args", "created", "exc_info", "exc_text", "filename", "funcName", "getMessage",
    "message", "levelname", "levelno", "lineno", "module", "msecs", "msg", "name", "pathname",
    "process", "processName", "relativeCreated", "stack_info", "thread", "threadName",
    "taskName",
))
#: `extra` keys OpenTelemetry's handler promotes to the record's event name (first wins).
_EVENT_NAME_KEYS: Final = ("otel.event.name", "event.name")
#: Python level names OpenTelemetry shows differently (its data model's severity texts).
_SEVERITY_TEXT: Final = {"WARNING": "WARN", "CRITICAL": "FATAL"}
#: Loggers whose records this handler never handles (see the module docstring).
OWN_LOGGERS: Final = ("dt_exporter", "urllib3")
DEFAULT_MAX_BUFFERED: Final = 32_768
#: Buffered records that wake the worker before its interval ends. Measured with
#: bench_app_cost: fewer, larger hand-overs cost less CPU in all than 512 did (a waiting item is
#: a tuple, cheap to keep; the thread switches are not).
_WAKE_AT: Final = 2_048
_INTERVAL_S: Final = 0.5  # the worker's wake-up interval (the channel's idle poll), and how
#                           long a pending body may wait for more records
_CHUNK: Final = 1_024  # records mapped per pass: bounds the objects alive at once
_ROUTE: Final = "logs"
_DEFAULT_FLUSH_S: Final = 30.0  # as the SDK's force_flush
_ERROR_EVERY_S: Final = 60.0
_CUTOFF_NS: Final = MAX_RECORD_AGE_NS - STALE_MARGIN_NS
_THREAD_PREFIX: Final = "dt_exporter-handler"
_NO_CONTEXT: Final = object()  # the worker has seen no context yet (None is a value it may see)

#: One buffered record, captured from its `LogRecord` (which is then free to go: see `emit`):
#: logger name, levelno, levelname, created, formatted message, the OpenTelemetry context of the
#: call (whose span gives the trace ids; a context is an immutable snapshot), the attributes
#: (`extra` and any a record factory adds), exc_info. A plain tuple: the cheapest to build.
_Item = tuple[str, int, str, float, str, "Context | None", dict[str, Any], Any]
_MESSAGE: Final = 4  # the message's place in an item


class _PendingBody:
    """One request body being written: a JSON array, gzipped as it grows, chunk by chunk, so
    that neither the records nor their mapped objects wait in memory for a body to fill."""

    __slots__ = ("_compressor", "_parts", "oldest_ns", "records", "size", "started")

    def __init__(self, encoding: Encoding, level: int) -> None:
        self._compressor = (zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: gzip
                            if encoding == "gzip" else None)
        self._parts: list[bytes] = []
        self.records = 0
        self.size = 2  # uncompressed bytes, the brackets included (Dynatrace's limit)
        self.oldest_ns = 0
        self.started = time.monotonic()

    def add(self, array: bytes, records: int, oldest_ns: int) -> None:
        """Append the objects of `array` (a JSON array of `records` objects)."""
        inner = memoryview(array)[1:-1]
        separator = b"," if self.records else b"["
        compressor = self._compressor
        if compressor is None:
            self._parts += (separator, bytes(inner))
        else:
            self._parts += (compressor.compress(separator), compressor.compress(inner))
        self.size += len(inner) + (1 if self.records else 0)
        self.records += records
        if oldest_ns and (not self.oldest_ns or oldest_ns < self.oldest_ns):
            self.oldest_ns = oldest_ns

    def finish(self) -> bytes:
        compressor = self._compressor
        if compressor is None:
            return b"".join(self._parts) + b"]"
        return b"".join(self._parts) + compressor.compress(b"]") + compressor.flush()


class DynatraceHandler(logging.Handler):
    """Sends stdlib `logging` records to Dynatrace's log ingest API (see the module docstring).

    `DynatraceHandler()` configures itself from the environment; keyword settings (the names of
    `ExporterConfig`) override it, or pass a whole `config`. `resource`: the OpenTelemetry
    resource whose attributes every record carries (default: `Resource.create()`, which reads
    `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`). `max_buffered_records` bounds the
    handler's own buffer in front of the channel's queue.
    """

    #: `logging.shutdown()` then calls only `close()`, which delivers within its deadline.
    flushOnClose = False  # noqa: N815 - the name logging.shutdown reads
    #: It never shows the library's own lines (see the module docstring): `_selflog`'s stderr
    #: fallback must not count it as a handler that shows them.
    refuses_own_records: Final = True

    def __init__(
        self,
        level: int | str = logging.NOTSET,
        *,
        config: ExporterConfig | None = None,
        resource: Resource | None = None,
        max_buffered_records: int = DEFAULT_MAX_BUFFERED,
        **settings: Any,
    ) -> None:
        super().__init__(level)
        if max_buffered_records < 1:
            raise ConfigError("max_buffered_records", "must be at least 1")
        self._capacity = max_buffered_records
        self._wake_at = min(_WAKE_AT, max_buffered_records)
        self._reset_process_state()
        self._channel: Channel | None = None
        self._config: ExporterConfig | None = None
        self.config_error: ConfigError | None = None
        strict = config is not None or bool(settings)
        try:
            cfg = config or ExporterConfig.from_env(**settings)
            cfg = _json_only(cfg)
        except ConfigError as exc:
            if strict:
                raise
            _log.error("dt_exporter: DynatraceHandler is disabled, every record will be "
                       "dropped: %s", exc)
            self.config_error = exc
            _forks.register(self)
            return
        self._config = cfg
        self._resource = resource if resource is not None else Resource.create()
        route = _routes.logs(cfg)
        enrichment = _enrichment.attributes_or_none(strict=strict)
        self._batcher = LogBatcher(cfg, route.name)
        self._truncations: Counter[str] = Counter()
        self._mapper = RecordMapper(cfg.limits, self._truncations, enrichment)
        self._bases: dict[str, tuple[JsonObject, Counter[str]]] = {}  # per logger name
        self._levels: dict[int, str] = {}  # levelno -> loglevel, where the name plays no part
        self._encoding: Encoding = "gzip" if cfg.compression == "gzip" else "identity"
        self._channel = Channel.for_config(
            cfg, [route], spool=DynatraceLogExporter._open_spool(cfg, strict=strict))
        _forks.register(self)  # after the channel: its state is fresh when ours is reset

    def _reset_process_state(self) -> None:
        """Fresh buffer, locks, books and worker: at start, and in a forked child (what the
        parent had buffered is the parent's to deliver)."""
        self._buffer: deque[_Item] = deque()
        self._lock = threading.RLock()  # the books; reentrant: a __del__ may log inside it
        self._encode_lock = threading.Lock()  # one thread maps and submits at a time
        self._handoff_lock = threading.Lock()  # in-hand records -> channel, atomic for stats()
        self._wake = threading.Event()
        self._in_hand = 0  # taken from the buffer, not yet submitted
        self._dropped: Counter[str] = Counter()  # before the channel
        self._closed = False
        self._finished = False  # close() handed over what it could: leftovers are `shutdown`
        self._started = False  # a worker was started in this process (or cannot be)
        self._ready = False  # emit's fast path: open, and the worker started (or cannot be)
        self._threadless = False  # no thread can start here: flush/close do the work
        self._worker: threading.Thread | None = None
        self._last_logged: dict[str, float] = {}  # rate limit of our own lines, per key
        # The worker's, under the encode lock: the body being written, the cuts it carries,
        # the last context seen and its span's ids as Dynatrace writes them.
        self._pending: _PendingBody | None = None
        self._pending_truncated: Counter[str] = Counter()
        self._last_context: object = _NO_CONTEXT
        self._span_ids: tuple[str, str, bool] | None = None

    def after_fork_in_child(self) -> None:
        closed = self._closed
        self._reset_process_state()
        self._closed = self._finished = closed  # a handler closed in the parent stays closed
        if self._config is not None:
            self._mapper.truncations = self._truncations = Counter()

    @property
    def config(self) -> ExporterConfig | None:
        return self._config

    # -- the application's thread -----------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> Any:
        """Filters, then `emit`, without the handler's lock: `emit` is thread-safe on its own
        (an append), and a lock per call is what this handler exists to avoid."""
        if not self.filters:
            self.emit(record)
            return True
        rv: Any = self.filter(record)
        if rv:
            self.emit(rv if isinstance(rv, logging.LogRecord) else record)  # 3.12+: replaced
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        """Capture the message and the span context, buffer the record; never raises."""
        try:
            if record.name.startswith(OWN_LOGGERS):
                return  # as if filtered: see the module docstring
            if not self._ready and not self._get_ready():
                return
            item = (record.name, record.levelno, record.levelname, record.created,
                    record.getMessage() if self.formatter is None else self.format(record),
                    _current_context(),
                    {k: v for k, v in record.__dict__.items() if k not in RECORD_FIELDS},
                    record.exc_info)
        except Exception:  # before the record is buffered: it counts once, as unmappable
            self._emit_failed(record)
            return
        buffer = self._buffer
        buffer.append(item)
        if len(buffer) >= self._wake_at:
            with contextlib.suppress(Exception):  # the record is buffered and counted already
                self._full(len(buffer))

    def _get_ready(self) -> bool:
        """The first record in this process (or one after close): start the worker, or count
        the record when the handler cannot take it."""
        if self._channel is None or self._closed:
            self._count("misconfigured" if self._channel is None else "already_shutdown")
            return False
        self._start_worker()
        self._ready = not self._closed
        return True

    def _full(self, depth: int) -> None:
        if depth == self._wake_at:
            self._wake.set()
        if depth > self._capacity:
            with self._lock:
                while len(self._buffer) > self._capacity:
                    self._buffer.popleft()
                    self._dropped["queue_full"] += 1
            self._error("queue_full", "dt_exporter: DynatraceHandler's buffer is full (%d "
                        "records): dropping the oldest", self._capacity)

    def _count(self, reason: str) -> None:
        with self._lock:
            self._dropped[reason] += 1

    def _emit_failed(self, record: logging.LogRecord) -> None:
        """A record whose message cannot be formatted (wrong `args`, a raising `__str__`) is
        counted `unmappable`; `handleError` reports it once a minute, not once a call."""
        try:
            self._count("unmappable")
            if self._due("handle_error"):
                self.handleError(record)
        except Exception:  # noqa: S110 - nothing may reach the application
            pass

    def _start_worker(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            if self._threadless:
                return
            thread = threading.Thread(target=self._run, daemon=True,
                                      name=f"{_THREAD_PREFIX}-{id(self):x}")
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down: flush/close do the work
                self._threadless = True
                return
            self._worker = thread

    # -- the worker -------------------------------------------------------------------------------

    def _run(self) -> None:
        """The worker thread: wake up, encode what is buffered, submit bodies, until closed."""
        while not self._closed:
            if len(self._buffer) < self._wake_at:
                self._wake.wait(_INTERVAL_S)
            self._wake.clear()
            if self._closed:
                break
            try:
                with self._encode_lock:
                    self._work(None, final=False)
            except Exception:  # a bug must not end the worker: the buffer would only fill
                self._error("worker", "dt_exporter: DynatraceHandler's worker failed; it goes "
                            "on", exc_info=True)

    def _work(self, deadline: float | None, *, final: bool) -> bool:
        """Under the encode lock: encode the records buffered now (not those other threads add
        meanwhile: a flush under load must end) chunk by chunk into the pending body, submitting
        each body when full; then the pending body too when `final` or when it is older than
        the interval. False if `deadline` (monotonic) passed first."""
        left = len(self._buffer)
        while left > 0 and self._buffer:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            with self._lock:
                take = min(len(self._buffer), _CHUNK, left)
                left -= take
                popleft = self._buffer.popleft
                items = [popleft() for _ in range(take)]
                self._in_hand += take
            self._encode(items)
        pending = self._pending
        if pending is not None and (final or time.monotonic() - pending.started >= _INTERVAL_S):
            self._submit_pending()
        return True

    def _encode(self, items: list[_Item]) -> None:
        """Map and serialise `items` into the pending body (submitting it first when they
        would not fit); never raises: a failure costs the records it touched, counted
        `unmappable`."""
        try:
            objects, oldest, dropped = self._map_all(items)
            encoded = self._batcher.objects(objects, len(items), oldest, dropped,
                                            self._truncations)
        except Exception:
            self._error("unexpected", "dt_exporter: DynatraceHandler could not encode %d "
                        "records; dropped", len(items), exc_info=True)
            encoded = Encoded(len(items), (), 0, {"unmappable": len(items)})
        finally:
            self._truncations.clear()
        self._pending_truncated.update(encoded.truncated)
        lost = sum(encoded.dropped.values())
        if lost:  # dropped before any body: into the handler's books now
            with self._lock:
                self._dropped.update(encoded.dropped)
                self._in_hand -= lost
        cfg = self._config
        assert cfg is not None
        for data, records in encoded.requests:
            pending = self._pending
            if pending is not None and (pending.size + len(data) - 1 > cfg.max_request_bytes
                                        or pending.records + records
                                        > cfg.max_records_per_request):
                self._submit_pending()
                pending = None
            if pending is None:
                pending = self._pending = _PendingBody(self._encoding, cfg.gzip_level)
            pending.add(data, records, encoded.oldest_ns)

    def _submit_pending(self) -> None:
        """Under the encode lock: the pending body to the channel."""
        pending, self._pending = self._pending, None
        if pending is None or not pending.records:
            return
        truncated, self._pending_truncated = self._pending_truncated, Counter()
        body = Body(_ROUTE, pending.finish(), pending.records, self._encoding, pending.oldest_ns,
                    raw_size=pending.size)
        assert self._channel is not None
        with self._handoff_lock:  # stats() sees these records in hand or in the channel
            try:
                self._channel.submit(Batch(pending.records, [body], {}, truncated))
            except Exception:  # the channel never raises; if it did, count what it cost
                with self._lock:
                    self._dropped["internal_error"] += pending.records
                self._error("submit", "dt_exporter: DynatraceHandler could not queue %d "
                            "records; dropped", pending.records, exc_info=True)
            finally:
                with self._lock:
                    self._in_hand -= pending.records

    def _map_all(self, items: list[_Item]) -> tuple[list[JsonObject], int, Counter[str]]:
        """The Dynatrace objects of `items`, their oldest timestamp, and the records left out
        (`too_old`, `unmappable`). Each object is what `RecordMapper.map` makes of the SDK
        record OpenTelemetry's handler builds for the same call, key for key (`test_handler`
        pins it), without building one.

        Composed of the mapper's own pieces (`base`: resource, enrichment and scope;
        `_add_attributes`: the attribute rules and budget; `_text`/`_content`: the limits) and
        its severity table, so no rule lives here; what this adds is reading a `LogRecord`, and
        caching what repeats from record to record (a logger's base, the ids of a span, the
        level of a levelno). One loop, its names local: this is the worker's hot path.
        Not thread-safe: the worker's, under the encode lock."""
        dropped: Counter[str] = Counter()
        objects: list[JsonObject] = []
        append = objects.append
        mapper = self._mapper
        add_attributes = mapper._add_attributes
        content_chars = mapper._content_chars
        bases, levels = self._bases, self._levels
        last_context, ids = self._last_context, self._span_ids
        oldest = 0
        cutoff = time.time_ns() - _CUTOFF_NS
        for name, levelno, levelname, created, message, context, attributes, exc_info in items:
            try:
                ts = int(created * 1e9)  # as OpenTelemetry's handler computes it
                if ts < cutoff:
                    dropped["too_old"] += 1
                    continue
                base = bases.get(name)
                if base is None:
                    base = self._base(name)
                out = base[0].copy()
                if base[1]:  # cuts in the shared resource part count for every record
                    mapper.truncations.update(base[1])
                if attributes and ("otel.event.name" in attributes or "event.name" in attributes):
                    event_name = None
                    attributes = dict(attributes)  # the buffered item stays as captured
                    for key in _EVENT_NAME_KEYS:  # OpenTelemetry's handler pops both; first wins
                        value = attributes.pop(key, None)
                        if event_name is None:
                            event_name = value
                    if event_name:
                        out["event.name"] = mapper._text(event_name)
                if exc_info:
                    attributes = {**attributes, **_exception_attributes(exc_info)}
                if attributes:
                    add_attributes(out, attributes)
                if context is not last_context:  # consecutive records share their context
                    last_context, ids = context, _span_ids(context)
                if ids is not None:
                    out["trace_id"], out["span_id"], out["dt.trace_sampled"] = ids
                out["content"] = (message if len(message) <= content_chars
                                  else mapper._content(message))
                out["timestamp"] = ts // 1_000_000
                level = levels.get(levelno)
                if level is None:
                    level = self._level(levelno, levelname)
                if level:
                    out["loglevel"] = level
            except Exception:  # one odd record costs only itself
                dropped["unmappable"] += 1
                continue
            append(out)
            if not oldest or ts < oldest:
                oldest = ts
        self._last_context, self._span_ids = last_context, ids
        return objects, oldest, dropped

    def _map_record(self, item: _Item) -> JsonObject:
        """One buffered record's object (see `_map_all`); for tests. Raises if it was left
        out."""
        objects, _, dropped = self._map_all([item])
        if dropped:
            raise ValueError(f"record left out: {dict(dropped)}")
        return objects[0]

    def _level(self, levelno: int, levelname: str) -> str:
        """The loglevel of a Python level: OpenTelemetry's level → severity number, then the
        mapper's table; below DEBUG (no severity number) from the level's name, as the SDK
        record's severity text. "" leaves Dynatrace's default. Cached per number when the
        name does not matter."""
        # The SDK's own table (its LoggingHandler's); imported here, once per level, so that an
        # SDK that moved it costs this mapping (tests fail), never `import dt_exporter`.
        from opentelemetry.sdk._logs._internal import std_to_otel

        severity = std_to_otel(levelno)
        level = LEVEL_BY_SEVERITY.get(severity) if severity else None
        if level is None:
            return loglevel_for(None, _SEVERITY_TEXT.get(levelname, levelname)) or ""
        if len(self._levels) < 256:
            self._levels[levelno] = level
        return level

    def _base(self, logger_name: str) -> tuple[JsonObject, Counter[str]]:
        """The mapped resource, enrichment and scope of a logger's records (the mapper's
        `base`), kept per logger name. The scope is the one OpenTelemetry's handler gives a
        record: its logger's name, no version."""
        if len(self._bases) >= 4096:
            self._bases.clear()
        scope = InstrumentationScope(logger_name)  # the mapper's cache keeps it alive
        base = self._bases[logger_name] = self._mapper.base(self._resource, scope)
        return base

    def _due(self, key: str) -> bool:
        """True at most once a minute per `key`: our complaints must not flood stderr."""
        now = time.monotonic()
        if now - self._last_logged.get(key, -_ERROR_EVERY_S) < _ERROR_EVERY_S:
            return False
        self._last_logged[key] = now
        return True

    def _error(self, key: str, message: str, *args: object, exc_info: bool = False) -> None:
        """One line per minute at most (our own logger: never handled here)."""
        if self._due(key):
            _log.error(message, *args, exc_info=exc_info)

    # -- the user's side --------------------------------------------------------------------------

    def flush(self, timeout_s: float | None = None) -> bool:  # type: ignore[override]
        """Deliver everything emitted before this call; True when all of it was delivered or
        dropped (counted) within `timeout_s` (default 30 s), False when time ran out."""
        if self._channel is None:
            return True
        try:
            deadline = time.monotonic() + (_DEFAULT_FLUSH_S if timeout_s is None
                                           else max(timeout_s, 0.0))
            if not self._hand_over(deadline):
                return False
            return self._channel.flush(max(deadline - time.monotonic(), 0.0))
        except Exception:
            _log.exception("dt_exporter: DynatraceHandler.flush failed")
            return False

    def _hand_over(self, deadline: float) -> bool:
        """Submit what is buffered, on this thread (the worker may be asleep, or absent)."""
        if not self._encode_lock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            return False
        try:
            return self._work(deadline, final=True)
        finally:
            self._encode_lock.release()

    def close(self) -> None:
        """Stop accepting records, deliver what is buffered within
        `DT_EXPORTER_SHUTDOWN_TIMEOUT`, stop the worker and the channel. Idempotent."""
        try:
            with self._lock:
                already, self._closed = self._closed, True
                self._ready = False
            if not already:
                self._shutdown()
        except Exception:
            _log.exception("dt_exporter: DynatraceHandler.close failed")
        finally:
            super().close()

    def _shutdown(self) -> None:
        self._wake.set()  # the worker ends after its current pass
        if self._channel is None or self._config is None:
            return
        timeout_s = self._config.shutdown_timeout_s
        deadline = time.monotonic() + timeout_s
        self._hand_over(deadline)
        self._finished = True
        self._refuse_leftovers()
        report = self._channel.shutdown(max(deadline - time.monotonic(), 0.0))
        self._refuse_pending()
        if report.undelivered:
            _log.warning("dt_exporter: DynatraceHandler closed with %d records undelivered (%s)",
                         report.undelivered, report.describe())
        dropped = self.stats().dropped
        if dropped:
            _log.warning("dt_exporter: DynatraceHandler dropped %d records: %s",
                         sum(dropped.values()),
                         ", ".join(f"{reason} {n}" for reason, n in sorted(dropped.items())))

    def _refuse_pending(self) -> None:
        """After shutdown: a body the worker was still writing when close's deadline passed
        will never be sent; its records count as `shutdown`."""
        if not self._encode_lock.acquire(blocking=False):
            return  # the worker is still at it; its records stay counted as queued
        try:
            pending, self._pending = self._pending, None
            if pending is not None and pending.records:
                with self._lock:
                    self._in_hand -= pending.records
                    self._dropped["shutdown"] += pending.records
        finally:
            self._encode_lock.release()

    def _refuse_leftovers(self) -> None:
        """Records still buffered after close's hand-over (its deadline passed, or an emit
        raced with close) count as `shutdown`."""
        with self._lock:
            left = len(self._buffer)
            self._buffer.clear()
            if left:
                self._dropped["shutdown"] += left

    def stats(self) -> DeliveryStats:
        """A consistent snapshot: received (every record that reached `emit`) = delivered +
        dropped + queued (the handler's buffer and the channel's queue) + in flight."""
        with self._handoff_lock:
            if self._finished:  # an emit raced with close(): nobody will send these
                self._refuse_leftovers()
            with self._lock:
                buffered = len(self._buffer) + self._in_hand
                dropped = Counter(self._dropped)
            channel = self._channel.stats() if self._channel is not None else None
        own = sum(dropped.values()) + buffered
        if channel is None:
            return DeliveryStats(own, 0, MappingProxyType(dict(dropped)), MappingProxyType({}),
                                 buffered, 0, 0, 0, 0, 0)
        dropped.update(channel.dropped)
        return dataclasses.replace(
            channel, received=channel.received + own, dropped=MappingProxyType(dict(dropped)),
            queued_records=channel.queued_records + buffered)

    @property
    def last_shutdown(self) -> ShutdownReport | None:
        return None if self._channel is None else self._channel.last_shutdown

    def __repr__(self) -> str:
        target = self._config.endpoint.base_url if self._config else "disabled"
        return f"<DynatraceHandler {target!r} ({logging.getLevelName(self.level)})>"


def _span_ids(context: Context | None) -> tuple[str, str, bool] | None:
    """trace_id, span_id (lower-case hex) and dt.trace_sampled of the span current in
    `context` (`trace.get_current_span(context).get_span_context()`); None without one."""
    if context is None:
        return None
    span_context = trace.get_current_span(context).get_span_context()
    if not span_context.is_valid:
        return None
    return (f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}",
            bool(span_context.trace_flags & 0x01))


def _json_only(config: ExporterConfig) -> ExporterConfig:
    """The handler makes JSON objects: OTLP chosen by argument is an error; from the
    environment (meant for the exporter) it is said once and JSON log ingest is used."""
    if config.protocol != "otlp":
        return config
    if config.source("protocol") == "argument":
        raise ConfigError("DT_EXPORTER_PROTOCOL", "DynatraceHandler sends JSON log ingest "
                          "only; use DynatraceLogExporter for OTLP")
    _log.warning("dt_exporter: DynatraceHandler sends JSON log ingest (%s); "
                 "DT_EXPORTER_PROTOCOL=otlp applies to DynatraceLogExporter only",
                 config.endpoint.logs_url)
    return dataclasses.replace(config, protocol="json")


def _exception_attributes(exc_info: Any) -> dict[str, str]:
    """The exception attributes OpenTelemetry's handler adds (semantic conventions)."""
    attributes: dict[str, str] = {}
    if not isinstance(exc_info, tuple) or len(exc_info) != 3:
        return attributes
    exctype, value, tb = exc_info
    if exctype is not None:
        attributes["exception.type"] = exctype.__name__
    if value is not None and value.args:
        attributes["exception.message"] = str(value.args[0])
    if tb is not None:
        attributes["exception.stacktrace"] = "".join(traceback.format_exception(*exc_info))
    return attributes

