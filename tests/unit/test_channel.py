"""The delivery channel with a fake transport and an injected clock: no network, no sleeping.

Each test drives the ONE retry loop through a scripted sequence of answers and checks the books
(`stats().balanced`, the reason of every drop) and the tickets' verdicts.
"""

from __future__ import annotations

import os
import random
import threading
from collections import deque
from collections.abc import Callable, Mapping

import orjson
import pytest

from dt_exporter import _routes
from dt_exporter._channel import Channel
from dt_exporter._payload import Batch, Body, compress
from dt_exporter._retry import Backoff
from dt_exporter._transport import Response
from dt_exporter.config import ExporterConfig
from dt_exporter.errors import TransportError
from dt_exporter.limits import MAX_RECORD_AGE_NS

HOUR_NS = 3600 * 10**9
NOW_NS = 1_800_000_000 * 10**9  # a fixed wall clock: 2027-01-15


class FakeClock:
    """Time moves only when the channel waits (or a test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall_ns = NOW_NS
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time_ns(self) -> int:
        return self.wall_ns

    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        if event.is_set():
            return True
        self.waits.append(timeout_s)
        self.advance(max(timeout_s, 0.0))
        return event.is_set()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall_ns += int(seconds * 1e9)


Answer = Response | TransportError | Callable[[bytes], Response]


class FakeTransport:
    """Answers from a script; the last answer repeats. Records every request."""

    def __init__(self, *answers: Answer) -> None:
        self.script: deque[Answer] = deque(answers)
        self.requests: list[tuple[str, bytes, Mapping[str, str]]] = []
        self.timeouts: list[float | None] = []
        self.closed = False

    def post(self, url: str, body: bytes, headers: Mapping[str, str], *,
             timeout_s: float | None = None) -> Response:
        self.requests.append((url, body, headers))
        self.timeouts.append(timeout_s)
        answer = self.script[0] if len(self.script) == 1 else self.script.popleft()
        if isinstance(answer, TransportError):
            raise answer
        if callable(answer):
            return answer(body)
        return answer

    def close(self) -> None:
        self.closed = True


def ok(status: int = 204, body: bytes = b"", **headers: str) -> Response:
    return Response(status, {k.replace("_", "-").lower(): v for k, v in headers.items()}, body)


CONFIG = ExporterConfig.from_env({}, endpoint="https://abc12345.live.dynatrace.com",
                                 token="dt0c01.TEST", compression="none")


def channel(transport: FakeTransport, clock: FakeClock, *, route: _routes.Route | None = None,
            max_queue_bytes: int = 1 << 20, max_elapsed_s: float = 3600.0,
            threaded: bool = False) -> Channel:
    return Channel([route or _routes.logs(CONFIG)], lambda: transport,
                   max_queue_bytes=max_queue_bytes, backoff=Backoff(1.0, 30.0),
                   max_elapsed_s=max_elapsed_s, clock=clock, rng=random.Random(7),
                   threaded=threaded)


def logs_body(*timestamps_ms: int, route: str = "logs") -> Body:
    objects = [{"content": f"line {i}", "timestamp": ts} for i, ts in enumerate(timestamps_ms)]
    oldest = min(timestamps_ms) * 1_000_000 if timestamps_ms else 0
    return Body(route, orjson.dumps(objects), len(objects), "identity", oldest)


def fresh(n: int) -> Body:
    return logs_body(*[NOW_NS // 1_000_000] * n)


def test_delivered_body_resolves_its_ticket() -> None:
    """A 204 delivers every record of the body and resolves its ticket with the status."""
    transport, clock = FakeTransport(ok()), FakeClock()
    ch = channel(transport, clock)
    (ticket,) = ch.submit(Batch(3, [fresh(3)]))
    assert ch.flush(1.0)
    result = ticket.result
    assert result is not None and result.delivered == 3 and result.status == 204
    stats = ch.stats()
    assert stats.delivered == 3 and stats.balanced and stats.requests == 1


def test_overflow_evicts_the_oldest_and_counts_them_queue_full() -> None:
    """A full queue evicts the oldest bodies: counted `queue_full`, their tickets resolved."""
    transport, clock = FakeTransport(ok()), FakeClock()
    body = fresh(10)
    ch = channel(transport, clock, max_queue_bytes=body.size * 2)
    tickets = [t for _ in range(3) for t in ch.submit(Batch(10, [fresh(10)]))]
    stats = ch.stats()
    assert stats.dropped == {"queue_full": 10}
    assert stats.queued_records == 20 and stats.balanced
    first = tickets[0].result
    assert first is not None and first.dropped == {"queue_full": 10}
    assert ch.flush(1.0)
    assert ch.stats().delivered == 20 and ch.stats().balanced


@pytest.mark.parametrize("kind", ["reset", "timeout"])
def test_a_lost_answer_counts_possible_duplicates(kind: str) -> None:
    """When the connection dies after sending (reset, timeout) the server may have the records:
    the retry is counted as possible duplicates."""
    transport = FakeTransport(TransportError(kind, "boom"), TransportError(kind, "boom"), ok())
    ch = channel(transport, FakeClock())
    ch.submit(Batch(4, [fresh(4)]))
    assert ch.flush(100.0)
    stats = ch.stats()
    assert stats.possible_duplicates == 8 and stats.delivered == 4 and stats.balanced


def test_a_refused_connection_is_no_duplicate() -> None:
    """A connection that never opened cannot have delivered anything."""
    transport = FakeTransport(TransportError("connect", "refused"), ok())
    ch = channel(transport, FakeClock())
    ch.submit(Batch(4, [fresh(4)]))
    assert ch.flush(100.0)
    assert ch.stats().possible_duplicates == 0 and ch.stats().delivered == 4


def test_records_that_cross_the_window_while_retrying_expire_alone() -> None:
    """During an outage, records that pass Dynatrace's 24 h window are dropped as `too_old`
    before the next attempt; the fresh records of the same body are delivered."""
    clock = FakeClock()
    now_ms = NOW_NS // 1_000_000
    old_ms = (NOW_NS - MAX_RECORD_AGE_NS) // 1_000_000 + 2 * 3_600_000  # 2 h left in the window
    # Dynatrace is down for three hours, then answers again.
    transport = FakeTransport(
        lambda _: ok() if clock.wall_ns > NOW_NS + 3 * HOUR_NS else ok(503))
    ch = channel(transport, clock, max_elapsed_s=86_400.0)
    (ticket,) = ch.submit(Batch(3, [logs_body(old_ms, now_ms, now_ms)]))
    assert ch.flush(86_400.0)
    stats = ch.stats()
    assert stats.dropped == {"too_old": 1}
    assert stats.delivered == 2 and stats.balanced
    delivered = orjson.loads(transport.requests[-1][1])
    assert [obj["timestamp"] for obj in delivered] == [now_ms, now_ms]
    result = ticket.result
    assert result is not None and result.delivered == 2 and result.dropped == {"too_old": 1}


def test_a_body_wholly_past_the_window_is_dropped_without_a_request() -> None:
    """A body whose every record is past the window is dropped before it is sent."""
    old_ms = (NOW_NS - MAX_RECORD_AGE_NS) // 1_000_000 - 1000
    transport = FakeTransport(ok())
    ch = channel(transport, FakeClock())
    ch.submit(Batch(2, [logs_body(old_ms, old_ms)]))
    assert ch.flush(1.0)
    assert ch.stats().dropped == {"too_old": 2} and transport.requests == []


def test_the_retry_budget_ends_in_retry_exhausted() -> None:
    """A body retried for longer than `max_elapsed_s` is dropped as `retry_exhausted`."""
    clock = FakeClock()
    ch = channel(FakeTransport(ok(503)), clock, max_elapsed_s=60.0)
    ch.submit(Batch(5, [fresh(5)]))
    assert ch.flush(3600.0)
    stats = ch.stats()
    assert stats.dropped == {"retry_exhausted": 5} and stats.balanced
    assert sum(clock.waits) <= 60.0 + 1e-6


def test_retry_after_is_honoured() -> None:
    """`Retry-After: 7` waits 7 s before the next attempt."""
    clock = FakeClock()
    ch = channel(FakeTransport(ok(429, retry_after="7"), ok()), clock)
    ch.submit(Batch(1, [fresh(1)]))
    assert ch.flush(100.0)
    assert clock.waits == [7.0]
    assert ch.stats().delivered == 1 and ch.stats().retries == 1


def test_a_retry_after_longer_than_the_budget_waits_out_the_budget() -> None:
    """A huge Retry-After is capped by what is left of the retry budget (one last try at the
    end), instead of dropping the body at once."""
    clock = FakeClock()
    transport = FakeTransport(ok(503, retry_after="100000"), ok())
    ch = channel(transport, clock, max_elapsed_s=300.0)
    ch.submit(Batch(1, [fresh(1)]))
    assert ch.flush(1000.0)
    assert clock.waits == [300.0]
    assert ch.stats().delivered == 1 and len(transport.requests) == 2


def test_flush_without_a_thread_respects_its_deadline() -> None:
    """On the calling thread, flush stops at its deadline and leaves the body queued; each
    attempt is told how long it may take (no longer than the flush has left)."""
    clock = FakeClock()
    transport = FakeTransport(ok(503))
    ch = channel(transport, clock)
    ch.submit(Batch(2, [fresh(2)]))
    assert not ch.flush(5.0)
    assert clock.now <= 1000.0 + 5.0 + 1e-6
    assert transport.timeouts and all(t is not None and t <= 5.0 for t in transport.timeouts)
    stats = ch.stats()
    assert stats.queued_records == 2 and stats.in_flight == 0 and stats.balanced


def test_shutdown_counts_what_is_left() -> None:
    """A shutdown whose deadline passes counts the remaining records as `shutdown`."""
    clock = FakeClock()
    ch = channel(FakeTransport(ok(503)), clock)
    ch.submit(Batch(2, [fresh(2)]))
    report = ch.shutdown(3.0)
    assert not report.drained and report.shutdown == 2
    stats = ch.stats()
    assert stats.dropped == {"shutdown": 2} and stats.balanced
    ch.submit(Batch(1, [fresh(1)]))
    assert ch.stats().dropped == {"shutdown": 2, "already_shutdown": 1}


def test_shutdown_interrupts_a_backoff_sleep_of_the_sender_thread() -> None:
    """With the sender thread asleep in a long backoff, shutdown wakes it at once and counts the
    body it held as `shutdown` (no waiting out the backoff)."""
    attempted = threading.Event()

    def unavailable(_: bytes) -> Response:
        attempted.set()
        return ok(503, retry_after="3600")

    from dt_exporter._channel import SYSTEM_CLOCK

    transport = FakeTransport(unavailable)
    ch = Channel([_routes.logs(CONFIG)], lambda: transport, max_queue_bytes=1 << 20,
                 backoff=Backoff(1.0, 30.0), max_elapsed_s=7200.0, clock=SYSTEM_CLOCK)
    ch.submit(Batch(3, [fresh(3)]))
    assert attempted.wait(10.0)
    report = ch.shutdown(10.0)
    assert report.shutdown == 3 and report.in_flight == 0
    stats = ch.stats()
    assert stats.dropped == {"shutdown": 3} and stats.balanced and len(transport.requests) == 1


def test_security_route_falls_back_to_the_legacy_path_after_a_404() -> None:
    """A 404 on the new OpenPipeline path switches, once, to the legacy path."""
    route = _routes.security(CONFIG, "scanner")
    transport = FakeTransport(ok(404), ok(202))
    ch = channel(transport, FakeClock(), route=route)
    body = Body("security", b'[{"a":1}]', 1, "identity")
    (ticket,) = ch.submit(Batch(1, [body]))
    assert ch.flush(1.0)
    urls = [url for url, _, _ in transport.requests]
    assert urls == [route.url, route.fallback_url]
    assert ticket.result is not None and ticket.result.delivered == 1


def test_permanent_answers_are_dropped_with_their_reason() -> None:
    """A 401 is not retried: dropped as `http_401`, one request, the ticket says why."""
    transport = FakeTransport(ok(401, b'{"error":{"message":"Token is missing a scope"}}'))
    ch = channel(transport, FakeClock())
    (ticket,) = ch.submit(Batch(2, [fresh(2)]))
    assert ch.flush(1.0)
    assert ch.stats().dropped == {"http_401": 2} and len(transport.requests) == 1
    result = ticket.result
    assert result is not None and result.status == 401
    assert result.message == "Token is missing a scope"


def limited(max_records: int) -> Callable[[bytes], Response]:
    def answer(body: bytes) -> Response:
        return ok(413) if len(orjson.loads(body)) > max_records else ok()

    return answer


def test_split_on_413_delivers_everything_and_learns_the_limit() -> None:
    """A 413 halves the body until the halves fit; the refused size is remembered, so the next
    body that large is split before it is sent (no second round of 413s)."""
    transport = FakeTransport(limited(16))
    ch = channel(transport, FakeClock())
    (ticket,) = ch.submit(Batch(64, [fresh(64)]))
    assert ch.flush(10.0)
    first = len(transport.requests)
    # 64 refused; its first 32 refused too; the second 32 is split unsent; four 16s accepted.
    assert first == 2 + 4
    result = ticket.result
    assert result is not None and result.delivered == 64 and not result.dropped
    ch.submit(Batch(64, [fresh(64)]))
    assert ch.flush(10.0)
    second = len(transport.requests) - first
    assert second == 4  # split before sending: no request is refused
    assert ch.stats().delivered == 128 and ch.stats().balanced


def test_a_single_record_refused_as_too_large_is_dropped() -> None:
    """A one-record body that still gets 413 is dropped as `record_too_large`."""
    ch = channel(FakeTransport(ok(413)), FakeClock())
    ch.submit(Batch(1, [fresh(1)]))
    assert ch.flush(1.0)
    assert ch.stats().dropped == {"record_too_large": 1}


def test_partial_success_counts_the_rejected_records() -> None:
    """A 200 whose message lists rejected record indexes counts them `rejected_by_server`."""
    answer = ok(200, b'{"details":{"code":200,"message":"rejected records: 1, 3"}}')
    ch = channel(FakeTransport(answer), FakeClock())
    ch.submit(Batch(4, [fresh(4)]))
    assert ch.flush(1.0)
    stats = ch.stats()
    assert stats.delivered == 2 and stats.dropped == {"rejected_by_server": 2}
    assert stats.partial_successes == 1 and stats.balanced


def test_gzip_bodies_are_split_and_recompressed() -> None:
    """A gzip body refused with 413 is split on its uncompressed JSON and sent gzipped."""
    data = fresh(8).data
    body = Body("logs", compress(data, "gzip", 1), 8, "gzip", NOW_NS)
    transport = FakeTransport(lambda b: ok(413) if len(b) == len(body.data) else ok())
    ch = channel(transport, FakeClock())
    ch.submit(Batch(8, [body]))
    assert ch.flush(1.0)
    assert ch.stats().delivered == 8
    assert all(h.get("Content-Encoding") == "gzip" for _, _, h in transport.requests)


def test_without_a_thread_flush_sends_on_the_calling_thread() -> None:
    """When no thread can be started (interpreter exit on 3.12), flush delivers on its own
    thread."""
    transport = FakeTransport(ok())
    ch = channel(transport, FakeClock(), threaded=False)
    ch.submit(Batch(5, [fresh(5)]))
    assert ch.stats().queued_records == 5
    assert ch.flush(1.0)
    assert ch.stats().delivered == 5


def test_the_threaded_channel_delivers_and_flush_waits_for_it() -> None:
    """With its sender thread, `flush` returns once the body is delivered."""
    from dt_exporter._channel import SYSTEM_CLOCK

    transport = FakeTransport(ok())
    ch = Channel([_routes.logs(CONFIG)], lambda: transport, max_queue_bytes=1 << 20,
                 backoff=Backoff(1.0, 30.0), max_elapsed_s=60.0, clock=SYSTEM_CLOCK)
    (ticket,) = ch.submit(Batch(2, [fresh(2)]))
    assert ch.flush(10.0)
    assert ticket.wait(1.0) is not None and ch.stats().delivered == 2
    assert ch.shutdown(1.0).drained


def test_a_forked_child_starts_its_own_books() -> None:
    """The child neither sees nor sends the parent's queue; its stats start at zero."""
    transport = FakeTransport(ok())
    ch = channel(transport, FakeClock())
    ch.submit(Batch(3, [fresh(3)]))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        stats = ch.stats()
        ch.submit(Batch(1, [fresh(1)]))
        ch.flush(1.0)
        after = ch.stats()
        os.write(write, orjson.dumps([stats.received, stats.queued_records,
                                      after.received, after.delivered]))
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        seen = orjson.loads(pipe.read())
    os.waitpid(pid, 0)
    assert seen == [0, 0, 1, 1]
    assert ch.stats().queued_records == 3
    assert ch.flush(1.0) and ch.stats().delivered == 3


def one_record(i: int) -> Body:
    data = orjson.dumps([{"content": f"line {i}", "timestamp": NOW_NS // 1_000_000}])
    return Body("logs", data, 1, "identity", NOW_NS, raw_size=len(data))


def test_small_queued_bodies_ride_in_one_request() -> None:
    """One-record bodies waiting in the queue (SimpleLogRecordProcessor makes those) are
    coalesced into one request within the limits; every ticket resolves delivered."""
    transport = FakeTransport(ok())
    ch = channel(transport, FakeClock())
    tickets = [t for i in range(100) for t in ch.submit(Batch(1, [one_record(i)]))]
    assert ch.flush(1.0)
    assert len(transport.requests) == 1
    sent = orjson.loads(transport.requests[0][1])
    assert [obj["content"] for obj in sent] == [f"line {i}" for i in range(100)]
    assert all(t.result is not None and t.result.delivered == 1 for t in tickets)
    assert ch.stats().delivered == 100 and ch.stats().balanced


def test_coalescing_keeps_within_the_record_limit() -> None:
    """A coalesced request never carries more records than a request may."""
    transport = FakeTransport(ok())
    ch = Channel([_routes.logs(CONFIG)], lambda: transport, max_queue_bytes=1 << 20,
                 backoff=Backoff(1.0, 30.0), max_elapsed_s=60.0, clock=FakeClock(),
                 threaded=False, max_records=30)
    for i in range(100):
        ch.submit(Batch(1, [one_record(i)]))
    assert ch.flush(1.0)
    assert [len(orjson.loads(body)) for _, body, _ in transport.requests] == [30, 30, 30, 10]


def test_a_400_on_a_coalesced_request_finds_the_bad_member() -> None:
    """When the server refuses a coalesced request with 400, its members go one by one, so
    only the record it objects to is dropped."""
    transport = FakeTransport(lambda body: ok(400) if b"line 3\"" in body else ok())
    ch = channel(transport, FakeClock())
    for i in range(6):
        ch.submit(Batch(1, [one_record(i)]))
    assert ch.flush(1.0)
    stats = ch.stats()
    assert stats.dropped == {"http_400": 1} and stats.delivered == 5 and stats.balanced
    assert len(transport.requests) == 1 + 6


def test_a_partial_success_on_a_coalesced_request_is_shared_out() -> None:
    """Rejections a 200 reports for a coalesced request are counted exactly; nothing is
    sent twice."""
    answer = ok(200, b'{"details":{"code":200,"message":"rejected records: 0, 4"}}')
    transport = FakeTransport(answer)
    ch = channel(transport, FakeClock())
    tickets = [t for i in range(5) for t in ch.submit(Batch(1, [one_record(i)]))]
    assert ch.flush(1.0)
    assert len(transport.requests) == 1
    stats = ch.stats()
    assert stats.delivered == 3 and stats.dropped == {"rejected_by_server": 2}
    assert sum(t.result.delivered for t in tickets if t.result) == 3


def test_events_are_never_coalesced() -> None:
    """The Events API takes one event per request: its bodies go alone."""
    route = _routes.events(CONFIG)
    transport = FakeTransport(ok(201, b'{"eventIngestResults":[{"status":"OK"}]}'))
    ch = channel(transport, FakeClock(), route=route)
    for i in range(3):
        data = orjson.dumps({"title": f"e{i}"})
        ch.submit(Batch(1, [Body("events", data, 1, "identity", raw_size=len(data))]))
    assert ch.flush(1.0)
    assert len(transport.requests) == 3


def test_otlp_requests_concatenate_and_expire_per_record() -> None:
    """OTLP bodies coalesce by concatenation (a repeated field), and expiry drops only the
    stale LogRecords of a request."""
    from collections import Counter

    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    from dt_exporter import _otlp as otlp
    from dt_exporter.limits import GRAIL

    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    stale = NOW_NS - MAX_RECORD_AGE_NS - HOUR_NS
    for i, ts in enumerate([stale, NOW_NS, NOW_NS]):
        provider.get_logger("t").emit(body=f"r{i}", timestamp=ts)
    records = list(memory.get_finished_logs())
    bodies = []
    for record in records:
        (request,) = otlp.encode_log_requests([record], GRAIL, truncations=Counter(),
                                             dropped=Counter())
        bodies.append(Body("otlp", request.data, 1, "identity",
                           record.log_record.timestamp or 0, raw_size=len(request.data)))
    otlp_config = ExporterConfig.from_env({}, endpoint="https://abc12345.live.dynatrace.com",
                                          token="dt0c01.TEST", compression="none",
                                          protocol="otlp")
    transport = FakeTransport(ok(200))
    ch = channel(transport, FakeClock(), route=_routes.logs(otlp_config))
    for body in bodies[1:]:
        ch.submit(Batch(1, [body]))
    assert ch.flush(1.0)
    assert len(transport.requests) == 1
    sent = ExportLogsServiceRequest.FromString(transport.requests[0][1])
    assert [lr.body.string_value for rl in sent.resource_logs for sl in rl.scope_logs
            for lr in sl.log_records] == ["r1", "r2"]
    merged = b"".join(body.data for body in bodies)
    kept, left, expired, oldest = otlp.expire_records(merged, NOW_NS - MAX_RECORD_AGE_NS)
    assert (left, expired, oldest) == (2, 1, NOW_NS) and kept is not None
    assert otlp.count_records(kept) == 2


def test_security_events_without_timestamps_coalesce() -> None:
    """Bodies with no timestamp (security events) coalesce too: no age, nothing to expire."""
    route = _routes.security(CONFIG, "scanner")
    transport = FakeTransport(ok(202))
    ch = channel(transport, FakeClock(), route=route)
    for i in range(5):
        data = orjson.dumps([{"finding": i}])
        ch.submit(Batch(1, [Body("security", data, 1, "identity", raw_size=len(data))]))
    assert ch.flush(1.0)
    assert len(transport.requests) == 1
    assert orjson.loads(transport.requests[0][1]) == [{"finding": i} for i in range(5)]
    assert ch.stats().delivered == 5 and ch.stats().balanced
