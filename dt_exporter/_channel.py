"""The delivery channel: queue, spool, sender thread and the ONE retry loop, per set of routes.

Front ends (the log exporter, the events clients, `dt-exporter send`) hand it a `Batch` of
finished bodies and get one `Ticket` per body back; a ticket resolves to the body's final
`BodyResult` (what was delivered, what was dropped and why, the last HTTP status and answer).
Nothing outside this module touches the queue, the locks or the accounting: `stats()`,
`flush()` and `shutdown()` live here.

The retry loop: send; classify the answer (`retry.classify`); deliver, read a partial success,
split on 413 (and remember the size that was refused, so later bodies are split before they
are sent), fall back to a route's legacy URL after a 404, drop permanent answers, or back off
(exponential, jitter, `Retry-After` capped by the time left) for at most `max_elapsed_s`.
Before every attempt the records past Dynatrace's 24 h window are dropped from the body, and
only those. Every record ends delivered or dropped by reason, exactly once.

Time and randomness come from an injected `Clock` and `random.Random`, so the unit tests drive
deadlines, backoff and expiry without sleeping. Without a sender thread (`threaded=False`, or
at interpreter exit when Python refuses new threads) `flush()` and `shutdown()` run the loop on
the calling thread, within their deadline.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from dt_exporter import _forks, _selflog
from dt_exporter._buffer import BodyQueue
from dt_exporter._payload import Batch, Body, compress, decompress
from dt_exporter._responses import server_message
from dt_exporter._retry import (
    PERMANENT_MEANING,
    Backoff,
    Outcome,
    Verdict,
    classify,
    classify_error,
)
from dt_exporter._routes import Route
from dt_exporter._spool import Spool
from dt_exporter._stats import Accounting, DeliveryStats
from dt_exporter._tickets import SYSTEM_CLOCK, BodyResult, Clock, ShutdownReport, Ticket
from dt_exporter._transport import SENDER_THREAD_PREFIX, Response, Transport
from dt_exporter.config import ExporterConfig
from dt_exporter.errors import DtExporterError, TransportError
from dt_exporter.limits import (
    DEFAULT_JSON_REQUEST_BYTES,
    LOGS_MAX_RECORDS_PER_REQUEST,
    MAX_RECORD_AGE_NS,
    STALE_MARGIN_NS,
)

_log = logging.getLogger(__name__)
_LOG_EVERY_S: Final = 60.0
_ABORT_GRACE_S: Final = 0.05
_IDLE_POLL_S: Final = 0.5
#: Small bodies wait at most this long for company before they are sent (see `_linger`).
_LINGER_S: Final = 0.2
#: ... or until this many (compressed) bytes of them are queued: a request worth sending.
_COALESCE_TARGET_BYTES: Final = 256 * 1024
#: Bodies below this (uncompressed) are coalesced: what one record or a few make. Larger ones
#: are worth their own request, and re-compressing them would only cost CPU.
_SMALL_BODY_BYTES: Final = 16 * 1024
#: How often an idle channel looks for spool files of owners that died meanwhile.
_RECOVER_EVERY_S: Final = 10.0
#: Records older than this are past Dynatrace's window (with a margin for clock skew).
_EXPIRY_NS: Final = MAX_RECORD_AGE_NS - STALE_MARGIN_NS


class Poster(Protocol):
    """What the channel needs of a transport (`transport.Transport`; a fake in unit tests)."""

    def post(self, url: str, body: bytes, headers: Mapping[str, str], *,
             timeout_s: float | None = None) -> Response: ...
    def close(self) -> None: ...


@dataclass(slots=True)
class _Job:
    """A queued body and the ticket it answers to."""

    body: Body
    ticket: Ticket
    first_attempt: float | None = None  # monotonic time of its first attempt (retry budget)
    queued_at: float = 0.0  # monotonic time it was submitted (how long it may linger)
    #: A coalesced request: the queued jobs it carries (each keeps its own ticket and file).
    members: list[_Job] | None = None
    solo: bool = False  # never coalesce again (its coalesced request got an answer it needs alone)

    @property
    def size(self) -> int:
        return self.body.size

    @property
    def records(self) -> int:
        return self.body.records

    @property
    def oldest_ns(self) -> int:
        return self.body.oldest_ns


class RateLimitedLog:
    """One line per key per interval: a broken token must not flood the application's logs."""

    def __init__(self, clock: Clock, interval_s: float = _LOG_EVERY_S) -> None:
        self._clock = clock
        self._interval = interval_s
        self._last: dict[str, float] = {}

    def __call__(self, level: int, key: str, message: str, *args: object) -> None:
        now = self._clock.monotonic()
        if now - self._last.get(key, -self._interval) >= self._interval:
            self._last[key] = now
            _log.log(level, message, *args)


class Channel:
    """Delivers bodies to their routes; owns the queue, the spool, the thread and the books."""

    def __init__(
        self,
        routes: Iterable[Route],
        new_transport: Callable[[], Poster],
        *,
        max_queue_bytes: int,
        backoff: Backoff,
        max_elapsed_s: float,
        gzip_level: int = 1,
        spool: Spool | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        threaded: bool = True,
        max_request_bytes: int = DEFAULT_JSON_REQUEST_BYTES,
        max_records: int = LOGS_MAX_RECORDS_PER_REQUEST,
    ) -> None:
        self._routes = {route.name: route for route in routes}
        self._max_request_bytes = max_request_bytes  # the bounds of a coalesced request
        self._max_records = max_records
        self._new_transport = new_transport
        self._accounting = Accounting()
        self._max_queue_bytes = max_queue_bytes
        self._backoff = backoff
        self._max_elapsed_s = max_elapsed_s
        self._gzip_level = gzip_level
        self._clock = clock
        self._rng = rng or random.Random()
        self._threaded = threaded
        self._log = RateLimitedLog(clock)
        self._url_overrides: dict[str, str] = {}
        self._refused_size: dict[str, int] = {}  # route -> smallest body size answered 413
        self._refused_raw: dict[str, int] = {}  # the same, uncompressed (bounds coalescing)
        self._spool = spool
        if spool is not None:
            self._max_queue_bytes = min(max_queue_bytes, spool.max_bytes)
        self._reset_process_state()
        _forks.register(self)
        _selflog.install()
        if spool is not None:
            self._recover()
            if len(self._queue):
                self._ensure_thread()  # a recovered spool is delivered at once

    @classmethod
    def for_config(
        cls,
        config: ExporterConfig,
        routes: Iterable[Route],
        *,
        spool: Spool | None = None,
        max_queue_bytes: int | None = None,
        new_transport: Callable[[], Poster] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> Channel:
        """A channel with the timeouts, TLS, proxy, queue bound and backoff of `config`."""
        return cls(
            routes,
            new_transport or (lambda: Transport.for_config(config)),
            max_queue_bytes=config.max_queue_bytes if max_queue_bytes is None else max_queue_bytes,
            backoff=Backoff(config.backoff_initial_s, config.backoff_max_s),
            max_elapsed_s=config.retry_max_elapsed_s,
            gzip_level=config.gzip_level,
            spool=spool,
            clock=clock,
            rng=rng,
            max_request_bytes=config.max_request_bytes,
            max_records=config.max_records_per_request,
        )

    def _reset_process_state(self) -> None:
        """Fresh locks, queue, pool and thread: at start, and in a forked child (the parent's
        queue belongs to the parent, which delivers it)."""
        self._pid = os.getpid()
        self._queue: BodyQueue[_Job] = BodyQueue(self._max_queue_bytes)
        self._lock = threading.Lock()  # held while a body moves between queue, wire and books
        self._progress = threading.Condition(threading.Lock())
        self._abort = threading.Event()
        self._closed = False
        self._report: ShutdownReport | None = None
        self._thread: threading.Thread | None = None
        self._transport: Poster | None = None
        self._busy = False
        self._asleep_until = 0.0  # monotonic end of the sender thread's current backoff
        self._flushing = 0  # flush() calls waiting now (no lingering meanwhile)
        self._hurry_until: float | None = None  # a shutdown's deadline, for attempts on the wire
        self._last_recover = self._clock.monotonic()

    def after_fork_in_child(self) -> None:
        self._accounting.reset()
        self._reset_process_state()
        if self._spool is not None:
            self._spool.after_fork_in_child()

    # -- front ends' side ------------------------------------------------------------------------

    def submit(self, batch: Batch, *, wait_s: float = 0.0) -> list[Ticket]:
        """Account for `batch` and queue its bodies; one ticket per body.

        Never blocks by default: when the queue is full the oldest bodies are evicted and counted
        as `queue_full`. A producer that may wait (the CLI) passes `wait_s` to wait that long for
        room first. After `shutdown()` every record counts as `already_shutdown`.
        """
        if self._pid != os.getpid():
            self.after_fork_in_child()
        if self._closed:
            return self._refuse(batch)
        now = self._clock.monotonic()
        jobs = [_Job(self._persist(body), Ticket(), queued_at=now) for body in batch.bodies]
        if wait_s > 0 and jobs:
            self._ensure_thread()  # someone must make room
            self._queue.wait_for_room(sum(job.size for job in jobs), wait_s)
        with self._lock:
            if self._closed:  # shut down while we were writing the spool
                for job in jobs:
                    self._unpersist(job.body)
                return self._refuse(batch)
            self._accounting.receive(batch.received)
            self._accounting.merge(batch.dropped, batch.truncated)
            for job in jobs:
                self._enqueue(job)
        if jobs:
            self._ensure_thread()
        return [job.ticket for job in jobs]

    def wait_for_room(self, size: int, timeout_s: float) -> bool:
        """Wait up to `timeout_s` until `size` more bytes fit in the queue (for a producer that
        waits instead of evicting, and wants to stay interruptible)."""
        self._ensure_thread()
        return self._queue.wait_for_room(size, timeout_s)

    def _refuse(self, batch: Batch) -> list[Ticket]:
        with self._lock:
            self._accounting.receive(batch.received)
            self._accounting.drop("already_shutdown", batch.received)
        tickets = []
        for body in batch.bodies:
            ticket = Ticket()
            ticket._resolve(0, ("already_shutdown", body.records))
            tickets.append(ticket)
        return tickets

    def _enqueue(self, job: _Job) -> None:
        """Under the lock."""
        for evicted in self._queue.put(job):
            self._accounting.drop("queue_full", evicted.records)
            evicted.ticket._resolve(0, ("queue_full", evicted.records))
            self._unpersist(evicted.body)
            self._log(logging.WARNING, "queue_full",
                      "dt_exporter buffer is full (%d bytes): dropping the oldest records",
                      self._max_queue_bytes)

    def stats(self) -> DeliveryStats:
        """A consistent snapshot: received = delivered + dropped + queued + in flight."""
        spool_bytes = self._spool.size() if self._spool is not None else 0  # disk: unlocked
        with self._lock:
            records, size = self._queue.depth
            oldest = self._queue.oldest_ns
            age_s = max(self._clock.time_ns() - oldest, 0) / 1e9 if oldest else 0.0
            return self._accounting.snapshot(records, size, age_s, spool_bytes)

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything queued has been delivered or dropped; False on timeout.
        Without a sender thread the bodies are sent on the calling thread, within `timeout_s`."""
        deadline = self._clock.monotonic() + max(timeout_s, 0.0)
        if self._pid != os.getpid():
            self.after_fork_in_child()
        if not self._thread_alive() and not self._ensure_thread():
            return self._run_here(deadline)
        with self._lock:
            self._flushing += 1
        self._queue.wake()  # a lingering sender goes at once
        try:
            with self._progress:
                return self._progress.wait_for(
                    self._idle, max(deadline - self._clock.monotonic(), 0.0))
        finally:
            with self._lock:
                self._flushing -= 1

    def shutdown(self, timeout_s: float) -> ShutdownReport:
        """Refuse new bodies, deliver what is queued within `timeout_s`, then stop. What is left
        counts as `shutdown` (lost) or `left_in_spool` (on disk for the next process)."""
        with self._lock:
            if self._report is not None or self._closed:
                return self._report or ShutdownReport(drained=True)
            self._closed = True
        deadline = self._clock.monotonic() + max(timeout_s, 0.0)
        self._hurry_until = deadline
        self._queue.wake()  # a lingering sender goes at once
        if self._thread_alive():
            # Drain, but stop waiting as soon as the thread sleeps past the deadline.
            with self._progress:
                self._progress.wait_for(
                    lambda: self._idle() or self._asleep_until > deadline,
                    max(deadline - self._clock.monotonic(), 0.0))
            drained = self._idle()
        else:
            drained = self.flush(timeout_s)
        self._abort.set()
        self._queue.wake()
        thread = self._thread
        if thread is not None:
            # A backoff sleep wakes at once on abort: give the thread a moment to put back the
            # body it holds. A request still on the wire is bounded by the attempt deadline.
            thread.join(max(deadline - self._clock.monotonic(), _ABORT_GRACE_S))
        lost = waiting = 0
        with self._lock:
            for job in self._queue.drain():
                reason = "left_in_spool" if job.body.spool_name else "shutdown"
                self._accounting.drop(reason, job.records)
                job.ticket._resolve(0, (reason, job.records))
                if job.body.spool_name:
                    waiting += job.records
                else:
                    lost += job.records
            in_flight = self._accounting.in_flight
        self._report = ShutdownReport(drained and not lost and not waiting, lost, waiting,
                                      in_flight)
        if thread is None or not thread.is_alive():
            self._release()  # else the thread does it when its attempt ends
        return self._report

    def _release(self) -> None:
        """Close the pool and the spool (its lock: another exporter may claim what is left).
        Idempotent: the shutting-down caller or the exiting sender thread, whichever is last."""
        if self._transport is not None:
            self._transport.close()
        if self._spool is not None:
            self._spool.close()

    @property
    def last_shutdown(self) -> ShutdownReport | None:
        """What `shutdown()` reported, once it ran."""
        return self._report

    # -- who runs the loop -----------------------------------------------------------------------

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _ensure_thread(self) -> bool:
        """Start the sender thread if there is none; False when none can run (threaded=False,
        or an interpreter at exit that refuses new threads)."""
        if not self._threaded:
            return False
        if self._thread_alive():
            return True
        thread = threading.Thread(target=self._run, name=f"{SENDER_THREAD_PREFIX}-{self._pid}",
                                  daemon=True)
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down: flush/shutdown send on their thread
            return False
        self._thread = thread
        return True

    def _idle(self) -> bool:
        with self._lock:
            return not self._busy and len(self._queue) == 0

    def _take(self) -> _Job | None:
        with self._lock:
            job = self._queue.get(timeout=0)
            if job is None:
                return None
            run = self._coalescible_run(job)
            self._busy = True
            self._accounting.set_in_flight(job.records + sum(m.records for m in run))
        if not run:
            return job
        try:
            return self._coalesce(job, run)
        except Exception:  # a bug (an unreadable body?) must not stop the sender: go one by one
            _log.exception("dt_exporter: could not coalesce bodies; sending them one by one")
            with self._lock:
                for member in (job, *run):
                    member.solo = True
                self._queue.put_front(run)
                self._accounting.set_in_flight(job.records)
            return job

    def _linger(self) -> None:
        """While only small coalescible bodies are queued, and fewer than make a good request,
        let the oldest wait up to `_LINGER_S` for company: a producer making one body per record
        (SimpleLogRecordProcessor) then costs a request per moment, not per record. Never while
        a flush waits or the channel closes (they go at once)."""
        head = self._queue.peek()
        if head is None:
            return
        route = self._routes[head.body.route]
        if (route.merge is None or head.solo or not head.body.raw_size
                or head.body.raw_size > _SMALL_BODY_BYTES):
            return
        until = head.queued_at + _LINGER_S
        while not (self._closed or self._flushing or self._abort.is_set()):
            records, size = self._queue.depth
            left = until - self._clock.monotonic()
            if left <= 0 or size >= _COALESCE_TARGET_BYTES or records >= self._max_records:
                return
            self._queue.wait_for_more(len(self._queue), left)

    def _coalescible_run(self, head: _Job) -> list[_Job]:
        """Under the lock: the small queued jobs that may ride in one request with `head`
        (same route and encoding, within the request limits). `SimpleLogRecordProcessor` makes
        one body per record; this keeps it from costing one request per record."""
        route = self._routes[head.body.route]
        body = head.body
        if (route.merge is None or head.solo or not body.raw_size
                or body.raw_size > _SMALL_BODY_BYTES or not len(self._queue)):
            return []
        size, records = body.raw_size, body.records
        limit = min(self._max_request_bytes, self._refused_raw.get(route.name, 1 << 62) - 1)

        def fits(job: _Job) -> bool:
            nonlocal size, records
            other = job.body
            if (job.solo or not other.raw_size or other.raw_size > _SMALL_BODY_BYTES
                    or other.route != body.route
                    or other.encoding != body.encoding
                    or size + other.raw_size + 1 > limit
                    or records + other.records > self._max_records):
                return False
            size += other.raw_size + 1
            records += other.records
            return True

        return self._queue.get_while(fits)

    def _coalesce(self, head: _Job, run: list[_Job]) -> _Job:
        """One job carrying `head` and `run` in one request body (built outside the lock)."""
        members = [head, *run]
        route = self._routes[head.body.route]
        assert route.merge is not None
        encoding = head.body.encoding
        data = route.merge([decompress(m.body.data, encoding) for m in members])
        oldest = min((m.oldest_ns for m in members if m.oldest_ns), default=0)
        started = [m.first_attempt for m in members if m.first_attempt is not None]
        body = Body(head.body.route, compress(data, encoding, self._gzip_level),
                    sum(m.records for m in members), encoding, oldest, raw_size=len(data))
        return _Job(body, Ticket(), min(started, default=None), members=members)

    def _run(self) -> None:
        """The sender thread."""
        while not self._abort.is_set():
            self._linger()
            job = self._take()
            if job is None:
                self._notify_progress()
                if self._closed:
                    break
                self._queue.wait(timeout=_IDLE_POLL_S)
                self._maybe_recover()
                continue
            self._deliver_safely(job, stop_at=None)
            self._notify_progress()
        self._notify_progress()
        if self._closed:  # shutdown may have returned already: release is idempotent
            self._release()

    def _run_here(self, deadline: float) -> bool:
        """The loop on the calling thread, until the queue is empty or `deadline` passes."""
        while self._clock.monotonic() < deadline:
            job = self._take()
            if job is None:
                return self._idle()
            if not self._deliver_safely(job, stop_at=deadline):
                break
        return self._idle()

    def _notify_progress(self) -> None:
        with self._progress:
            self._progress.notify_all()

    def _deliver_safely(self, job: _Job, stop_at: float | None) -> bool:
        """False when the job was put back unfinished (abort, or `stop_at` reached)."""
        try:
            return self._deliver(job, stop_at)
        except Exception:  # a bug must cost this body, never the sender thread
            _log.exception("dt_exporter: unexpected error while sending; body dropped")
            self._finish(job, dropped=("internal_error", job.records))
            return True

    # -- the ONE retry loop ----------------------------------------------------------------------

    def _deliver(self, job: _Job, stop_at: float | None) -> bool:
        route = self._routes[job.body.route]
        clock = self._clock
        if job.first_attempt is None:
            job.first_attempt = clock.monotonic()
        budget_end = job.first_attempt + self._max_elapsed_s
        attempt = failures = 0
        while True:
            if self._abort.is_set() or (stop_at is not None and clock.monotonic() >= stop_at):
                return self._put_back(job)
            if job.members is not None and 0 < job.oldest_ns < self._cutoff_ns():
                return self._unmerge(job)  # each member expires its own records
            if not self._expire(route, job):
                return True
            refused = self._refused_size.get(route.name)
            if refused is not None and job.size >= refused:
                if job.members is not None:
                    return self._unmerge(job)
                if self._split(route, job, learned=True):
                    return True
            verdict, response = self._attempt(route, job, failures, stop_at)
            if verdict.outcome is Outcome.DELIVERED:
                self._finish(job, delivered=job.records)
                return True
            if verdict.outcome is Outcome.PARTIAL:
                self._partial(route, job, response)
                return True
            if verdict.outcome is Outcome.SPLIT:
                size = self._refused_size.get(route.name)
                self._refused_size[route.name] = job.size if size is None else min(size, job.size)
                if job.body.raw_size:
                    raw = self._refused_raw.get(route.name, job.body.raw_size)
                    self._refused_raw[route.name] = min(raw, job.body.raw_size)
                if job.members is not None:
                    return self._unmerge(job)  # nothing was taken: send the members as queued
                if not self._split(route, job, learned=False):
                    self._log(logging.ERROR, "record_too_large",
                              "dt_exporter: Dynatrace refused a single record as too large (413)")
                    self._finish(job, dropped=("record_too_large", job.records))
                return True
            if verdict.outcome is Outcome.DROP:
                if verdict.reason == "http_404" and self._fall_back(route):
                    continue
                if job.members is not None and verdict.reason == "http_400":
                    return self._unmerge(job)  # find the member the server objects to
                self._log_permanent(route, verdict, response)
                self._finish(job, dropped=(verdict.reason, job.records))
                return True
            failures += 1
            if verdict.immediate:
                continue
            attempt += 1
            now = clock.monotonic()
            left = budget_end - now
            if left <= 0:
                self._log(logging.ERROR, "retry_exhausted",
                          "dt_exporter gave up on %d records after %d attempts (last: %s)",
                          job.records, attempt, verdict.reason)
                self._finish(job, dropped=("retry_exhausted", job.records))
                return True
            # A Retry-After longer than the budget waits out the budget for one last try.
            delay = min(self._backoff.delay(attempt, self._rng, verdict.retry_after_s), left)
            self._accounting.count(retries=1)
            if stop_at is not None and now + delay > stop_at:
                return self._put_back(job)  # the next try would come too late for the caller
            self._asleep_until = now + delay
            self._notify_progress()
            interrupted = clock.wait(self._abort, delay)
            self._asleep_until = 0.0
            if interrupted:
                return self._put_back(job)

    def _attempt(self, route: Route, job: _Job, failures: int,
                 stop_at: float | None) -> tuple[Verdict, Response | None]:
        body = job.body
        headers = {"Content-Type": route.content_type}
        if route.authorization:
            headers["Authorization"] = route.authorization
        if body.encoding == "gzip":
            headers["Content-Encoding"] = "gzip"
        url = self._url_overrides.get(route.name, route.url)
        self._accounting.count(requests=1)
        try:
            with _selflog.sending():  # urllib3's lines about the pool and request are ours
                if self._transport is None:
                    self._transport = self._new_transport()
                response = self._transport.post(url, body.data, headers,
                                                timeout_s=self._attempt_limit(stop_at))
        except TransportError as exc:
            self._log(logging.WARNING, f"transport_{exc.kind}",
                      "dt_exporter could not reach %s (%s); will retry", _host(url), exc)
            if exc.kind in ("reset", "timeout"):  # the server may have taken it
                self._accounting.count(duplicates=body.records)
            with self._lock:
                job.ticket._answer(None, str(exc), b"")
            return classify_error(exc.kind, failures), None
        with self._lock:
            job.ticket._answer(response.status, server_message(response.body), response.body)
        return classify(response.status, response.headers, self._clock.time_ns() / 1e9), response

    def _cutoff_ns(self) -> int:
        return self._clock.time_ns() - _EXPIRY_NS

    def _attempt_limit(self, stop_at: float | None) -> float | None:
        """How long this attempt may take: no longer than the flush or shutdown waiting on it."""
        ends = [t for t in (stop_at, self._hurry_until) if t is not None]
        return max(min(ends) - self._clock.monotonic(), 0.0) if ends else None

    def _expire(self, route: Route, job: _Job) -> bool:
        """Drop the records of `job` past the 24 h window; False when none is left."""
        body = job.body
        cutoff = self._cutoff_ns()
        if not body.oldest_ns or body.oldest_ns >= cutoff:
            return True
        if route.expire is None:
            self._finish(job, dropped=("too_old", job.records))
            return False
        kept, records, expired, oldest = route.expire(decompress(body.data, body.encoding), cutoff)
        if kept is None or records == 0:
            self._finish(job, dropped=("too_old", job.records))
            return False
        if expired:
            fresh = Body(body.route, compress(kept, body.encoding, self._gzip_level), records,
                         body.encoding, oldest, raw_size=len(kept))
            self._unpersist(body)
            fresh = self._persist(fresh)
            with self._lock:
                self._accounting.drop("too_old", expired)
                self._accounting.set_in_flight(records)
                job.ticket._dropped["too_old"] += expired
            job.body = fresh
        return True

    def _split(self, route: Route, job: _Job, *, learned: bool) -> bool:
        """Replace `job` by its halves at the head of the queue; False if it cannot be split.
        `learned`: split before sending, because a body this large was refused before."""
        body = job.body
        halves = route.split(decompress(body.data, body.encoding))
        if halves is None:  # one record: refused for good, or (learned) worth one try
            return False
        parts = [
            _Job(self._persist(Body(body.route, compress(half, body.encoding, self._gzip_level),
                                    records, body.encoding, body.oldest_ns,
                                    raw_size=len(half))),
                 job.ticket, job.first_attempt)
            for half, records in halves
        ]
        lost = body.records - sum(part.records for part in parts)
        self._finish(job, requeue=parts, dropped=("record_too_large", lost) if lost else None)
        return True

    def _partial(self, route: Route, job: _Job, response: Response | None) -> None:
        status, content = (response.status, response.body) if response else (200, b"")
        rejected, message = route.read_rejections(status, content)
        rejected = min(max(rejected, 0), job.records)
        if rejected or message:  # an OTLP 200 with an empty body is a plain success
            self._accounting.count(partial=1)
            self._log(logging.WARNING, f"partial_{route.name}",
                      "dt_exporter: Dynatrace accepted only part of a request to %s: %s",
                      route.name, message[:300] or "(no message)")
        self._finish(job, delivered=job.records - rejected,
                     dropped=("rejected_by_server", rejected) if rejected else None)

    def _fall_back(self, route: Route) -> bool:
        if route.fallback_url is None or route.name in self._url_overrides:
            return False
        self._url_overrides[route.name] = route.fallback_url
        _log.warning("dt_exporter: %s answered 404; this tenant still uses the legacy path %s",
                     _host(route.url), route.fallback_url.split("/platform/", 1)[-1])
        return True

    def _log_permanent(self, route: Route, verdict: Verdict, response: Response | None) -> None:
        status = response.status if response else 0
        self._log(logging.ERROR, verdict.reason, "dt_exporter: %s",
                  describe_permanent(route, status, response.body if response else b""))

    # -- final states ----------------------------------------------------------------------------

    def _finish(self, job: _Job, *, delivered: int = 0, dropped: tuple[str, int] | None = None,
                requeue: list[_Job] | None = None) -> None:
        """Move the in-flight job to its final state, atomically for `stats()`."""
        if job.members is not None:
            return self._finish_members(job, delivered, dropped)
        self._unpersist(job.body)
        with self._lock:
            if delivered:
                self._accounting.deliver(delivered)
            if dropped is not None:
                self._accounting.drop(*dropped)
            if requeue:
                self._queue.put_front(requeue)
            job.ticket._resolve(delivered, dropped, len(requeue) if requeue else 0)
            self._accounting.set_in_flight(0)
            self._busy = False

    def _finish_members(self, job: _Job, delivered: int,
                        dropped: tuple[str, int] | None) -> None:
        """A coalesced request's verdict, shared out over its members in queue order: the
        delivered records first (a partial success names no member), then the dropped."""
        assert job.members is not None
        answer = (job.ticket._status, job.ticket._message, job.ticket._response)
        for member in job.members:
            self._unpersist(member.body)
        with self._lock:
            left = delivered
            reason, _ = dropped if dropped is not None else ("", 0)
            for member in job.members:
                taken = min(member.records, left)
                left -= taken
                lost = member.records - taken
                if taken:
                    self._accounting.deliver(taken)
                if lost:
                    self._accounting.drop(reason, lost)
                member.ticket._answer(*answer)
                member.ticket._resolve(taken, (reason, lost) if lost else None)
            self._accounting.set_in_flight(0)
            self._busy = False

    def _unmerge(self, job: _Job) -> bool:
        """Return a coalesced request's members to the head of the queue, to go one by one."""
        assert job.members is not None
        for member in job.members:
            member.solo = True
            member.first_attempt = job.first_attempt
        with self._lock:
            self._queue.put_front(job.members)
            self._accounting.set_in_flight(0)
            self._busy = False
        return True

    def _put_back(self, job: _Job) -> bool:
        """Return an unfinished job to the head of the queue (abort or deadline)."""
        with self._lock:
            self._queue.put_front(job.members if job.members is not None else [job])
            self._accounting.set_in_flight(0)
            self._busy = False
        return False

    # -- the spool ---------------------------------------------------------------------------------

    def _persist(self, body: Body) -> Body:
        """Write `body` to the spool; on failure keep it in memory only, counted."""
        if self._spool is None:
            return body
        try:
            return self._spool.write(body)
        except DtExporterError as exc:  # SpoolError: disk full, directory gone, ...
            self._accounting.count(spool_write_failed=body.records)
            self._log(logging.WARNING, "spool_write_failed",
                      "dt_exporter: the disk spool could not take a body (%s); keeping it in "
                      "memory only", exc)
            return body

    def _unpersist(self, body: Body) -> None:
        if self._spool is not None and body.spool_name:
            self._spool.remove(body)

    def _recover(self) -> None:
        """Queue what earlier processes (or an earlier exporter here) left in the spool."""
        assert self._spool is not None
        recovered = self._spool.recover()
        corrupt = recovered.corrupt_records
        jobs = [_Job(body, Ticket()) for body in recovered.bodies]
        records = sum(job.records for job in jobs)
        with self._lock:
            if corrupt:
                self._accounting.receive(corrupt)
                self._accounting.drop("spool_corrupt", corrupt)
            if records:
                self._accounting.receive(records)
                self._accounting.count(duplicates=records)
            for job in jobs:
                self._enqueue(job)
        if recovered.corrupt_files:
            _log.warning("dt_exporter: %d corrupt spool files set aside in %s",
                         recovered.corrupt_files, self._spool.directory)
        if records:
            _log.info("dt_exporter: recovered %d records from the spool %s", records,
                      self._spool.directory)

    def _maybe_recover(self) -> None:
        """While idle, claim the files of owners that died since (a killed worker's)."""
        if self._spool is None or self._closed:
            return
        now = self._clock.monotonic()
        if now - self._last_recover >= _RECOVER_EVERY_S:
            self._last_recover = now
            self._recover()


def describe_permanent(route: Route, status: int, body: bytes) -> str:
    """The one wording of a permanent answer: what the status means, the scope the route needs
    on 401/403, and the server's own message. Never the token."""
    meaning = PERMANENT_MEANING.get(status, "unexpected answer")
    if status in (401, 403):
        meaning += f" (the {route.name} endpoint needs scope {route.scope})"
    detail = server_message(body)
    return f"{route.name} answered {status}: {meaning}" + (f" — {detail}" if detail else "")


def _host(url: str) -> str:
    return url.split("/", 3)[2] if "://" in url else url


__all__ = [
    "SYSTEM_CLOCK",
    "BodyResult",
    "Channel",
    "Clock",
    "ShutdownReport",
    "Ticket",
    "describe_permanent",
]
