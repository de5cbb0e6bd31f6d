"""The sender thread and the ONE retry loop: send, classify, back off, split on 413, account.

`export()` only queues finished bodies; this thread does every byte of network I/O. Deadlines:
each body may be retried for `max_elapsed_s`; `flush` and `shutdown` wait no longer than asked,
and shutdown interrupts a backoff sleep at once.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from dt_exporter.buffer import BodyQueue
from dt_exporter.config import ExporterConfig
from dt_exporter.errors import TransportError
from dt_exporter.limits import MAX_RECORD_AGE_NS
from dt_exporter.payload import Body, compress, decompress
from dt_exporter.responses import server_message
from dt_exporter.retry import PERMANENT_MEANING, Backoff, Outcome, Verdict, classify, classify_error
from dt_exporter.spool import Spool
from dt_exporter.stats import Accounting
from dt_exporter.transport import SENDER_THREAD_PREFIX, Response, Transport

_log = logging.getLogger(__name__)
_LOG_EVERY_S = 60.0
_ABORT_GRACE_S = 0.05

#: (status, response body) -> (records the server rejected, its message)
RejectionReader = Callable[[int, bytes], tuple[int, str]]


@dataclass(frozen=True, slots=True)
class Route:
    """Everything the sender needs to know about one ingest API."""

    name: str
    url: str
    content_type: str
    scope: str  # the token scope this endpoint needs, named when it answers 401/403
    split: Callable[[bytes], tuple[bytes, bytes] | None]  # halves of an uncompressed body
    count: Callable[[bytes], int]  # records in an uncompressed body
    read_rejections: RejectionReader
    authorization: str | None = field(default=None, repr=False)
    fallback_url: str | None = None  # tried from then on after a 404 (legacy OpenPipeline path)


class RateLimitedLog:
    """One line per key per interval: a broken token must not flood the application's logs."""

    def __init__(self, interval_s: float = _LOG_EVERY_S) -> None:
        self._interval = interval_s
        self._last: dict[str, float] = {}

    def __call__(self, level: int, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self._interval) >= self._interval:
            self._last[key] = now
            _log.log(level, message, *args)


class Sender:
    """Owns the queue's consumer thread; started lazily, restarted fresh in a forked child."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        new_transport: Callable[[], Transport],
        accounting: Accounting,
        *,
        max_queue_bytes: int,
        backoff: Backoff,
        max_elapsed_s: float,
        gzip_level: int = 1,
        rng: random.Random | None = None,
        spool: Spool | None = None,
    ) -> None:
        self._routes = dict(routes)
        self._new_transport = new_transport
        self._accounting = accounting
        self._max_queue_bytes = max_queue_bytes
        self._backoff = backoff
        self._max_elapsed_s = max_elapsed_s
        self._gzip_level = gzip_level
        self._rng = rng or random.Random()
        self._log = RateLimitedLog()
        self._url_overrides: dict[str, str] = {}
        self._spool = spool
        if spool is not None:
            self._max_queue_bytes = min(max_queue_bytes, spool.max_bytes)
        self._reset_process_state()
        register_fork_hook(self)
        if spool is not None:
            self._recover(spool)

    @classmethod
    def for_config(
        cls,
        config: ExporterConfig,
        route: Route,
        accounting: Accounting,
        *,
        new_transport: Callable[[], Transport] | None = None,
        max_queue_bytes: int | None = None,
        spool: Spool | None = None,
    ) -> Sender:
        """A sender for one route with the timeouts, TLS, queue bound and backoff of `config`."""

        def transport() -> Transport:
            return Transport(timeout_s=config.timeout_s, ca_bundle=config.ca_bundle,
                             verify=not config.insecure_skip_tls_verify)

        return cls(
            {route.name: route},
            new_transport or transport,
            accounting,
            max_queue_bytes=config.max_queue_bytes if max_queue_bytes is None else max_queue_bytes,
            backoff=Backoff(config.backoff_initial_s, config.backoff_max_s),
            max_elapsed_s=config.retry_max_elapsed_s,
            gzip_level=config.gzip_level,
            spool=spool,
        )

    def _recover(self, spool: Spool) -> None:
        """Queue what earlier processes left in the spool (at least once: maybe duplicates)."""
        recovered = spool.recover()
        if recovered.corrupt_files:
            self._accounting.receive(recovered.corrupt_files)
            self._accounting.drop("spool_corrupt", recovered.corrupt_files)
            _log.warning("dt_exporter: %d corrupt spool files set aside in %s",
                         recovered.corrupt_files, spool.directory)
        records = sum(body.records for body in recovered.bodies)
        if records:
            self._accounting.receive(records)
            self._accounting.count(duplicates=records)
            _log.info("dt_exporter: recovered %d records from the spool %s", records,
                      spool.directory)
        for body in recovered.bodies:
            self._enqueue(body)

    def _reset_process_state(self) -> None:
        """Fresh locks, queue, pool and thread: at start, and in a forked child (the parent's
        queue belongs to the parent, which delivers it)."""
        self._pid = os.getpid()
        self.queue = BodyQueue(self._max_queue_bytes)
        self.transition = threading.Lock()  # held while a body moves between queue and wire
        self._progress = threading.Condition(threading.Lock())
        self._closing = threading.Event()
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self._transport: Transport | None = None
        self._busy = False

    def after_fork_in_child(self) -> None:
        self._accounting.reset()
        self._reset_process_state()
        if self._spool is not None:
            self._spool.after_fork_in_child()

    # -- application side ------------------------------------------------------------------------

    def submit(self, body: Body, *, wait_s: float = 0.0) -> None:
        """Queue a body. The exporter never waits (`wait_s=0`): when the queue is full the oldest
        bodies are evicted and counted as `queue_full`. A batch producer such as the CLI may wait
        up to `wait_s` seconds for room first."""
        if self._pid != os.getpid():
            self.after_fork_in_child()
        if wait_s > 0:
            self._ensure_thread()  # someone must make room
        if self._spool is not None:
            body = self._spool.write(body)
        self._enqueue(body, wait_s)
        self._ensure_thread()

    def _enqueue(self, body: Body, wait_s: float = 0.0) -> None:
        for evicted in self.queue.put(body, wait_s):
            self._accounting.drop("queue_full", evicted.records)
            if self._spool is not None:
                self._spool.remove(evicted)
            self._log(logging.WARNING, "queue_full",
                      "dt_exporter buffer is full (%d bytes): dropping the oldest records",
                      self._max_queue_bytes)

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything queued has been delivered or dropped; False on timeout."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        with self._progress:
            return self._progress.wait_for(self._idle, max(deadline - time.monotonic(), 0.0))

    def shutdown(self, timeout_s: float) -> bool:
        """Drain within `timeout_s`, then abandon what is left (counted as `shutdown`)."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        self._closing.set()
        self.queue.wake()
        drained = self.flush(timeout_s)
        self._abort.set()
        thread = self._thread
        if thread is not None:
            # A backoff sleep wakes at once on abort: give the thread a moment to record the
            # body it holds. A request still on the wire is left to its own timeout.
            thread.join(max(deadline - time.monotonic(), _ABORT_GRACE_S))
        with self.transition:
            for body in self.queue.drain():
                self._accounting.drop(self._abandoned_reason, body.records)
        if self._transport is not None and (thread is None or not thread.is_alive()):
            self._transport.close()
        return drained

    @property
    def spool_bytes(self) -> int:
        return self._spool.size() if self._spool is not None else 0

    @property
    def _abandoned_reason(self) -> str:
        """Bodies left at shutdown: lost without a spool, waiting on disk with one."""
        return "shutdown" if self._spool is None else "left_in_spool"

    def _idle(self) -> bool:
        # Under `transition`: a body taken from the queue is marked busy in the same step.
        with self.transition:
            return not self._busy and len(self.queue) == 0

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        thread = threading.Thread(target=self._run, name=f"{SENDER_THREAD_PREFIX}-{self._pid}",
                                  daemon=True)
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down: the queue stays, counted at shutdown
            return
        self._thread = thread

    # -- sender thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._abort.is_set():
            with self.transition:
                body = self.queue.get(timeout=0)
                if body is not None:
                    self._busy = True
                    self._accounting.set_in_flight(body.records)
            if body is None:
                if self._closing.is_set():
                    break
                self._notify_progress()
                self.queue.wait(timeout=0.5)
                continue
            try:
                self._deliver(body)
            except Exception:  # a bug must cost this body, never the sender thread
                _log.exception("dt_exporter: unexpected error while sending; body dropped")
                self._finish(body, dropped=("internal_error", body.records))
            self._notify_progress()
        self._notify_progress()

    def _notify_progress(self) -> None:
        with self._progress:
            self._progress.notify_all()

    def _finish(self, body: Body, *, delivered: int = 0, dropped: tuple[str, int] | None = None,
                requeue: list[Body] | None = None) -> None:
        """Move the in-flight body to its final state, atomically for `stats()`."""
        if self._spool is not None:
            if dropped is not None and dropped[0] == "shutdown":
                dropped = (self._abandoned_reason, dropped[1])  # its file stays for next time
            else:
                self._spool.remove(body)
                requeue = [self._spool.write(part) for part in requeue or []]
        with self.transition:
            if delivered:
                self._accounting.deliver(delivered)
            if dropped is not None:
                self._accounting.drop(*dropped)
            if requeue:
                self.queue.put_front(requeue)
            self._accounting.set_in_flight(0)
            self._busy = False

    def _deliver(self, body: Body) -> None:
        route = self._routes[body.route]
        deadline = time.monotonic() + self._max_elapsed_s
        attempt = failures = 0
        while True:
            if self._abort.is_set():
                return self._finish(body, dropped=("shutdown", body.records))
            if body.oldest_ns and time.time_ns() - body.oldest_ns > MAX_RECORD_AGE_NS:
                return self._finish(body, dropped=("too_old", body.records))
            verdict, response = self._attempt(route, body, failures)
            if verdict.outcome is Outcome.DELIVERED:
                return self._finish(body, delivered=body.records)
            if verdict.outcome is Outcome.PARTIAL:
                return self._partial(route, body, response)
            if verdict.outcome is Outcome.SPLIT:
                return self._split(route, body)
            if verdict.outcome is Outcome.DROP:
                if verdict.reason == "http_404" and self._fall_back(route):
                    continue
                self._log_permanent(route, verdict, response)
                return self._finish(body, dropped=(verdict.reason, body.records))
            failures += 1
            if verdict.immediate:
                continue
            attempt += 1
            delay = self._backoff.delay(attempt, self._rng, verdict.retry_after_s)
            if time.monotonic() + delay > deadline:
                self._log(logging.ERROR, "retry_exhausted",
                          "dt_exporter gave up on %d records after %d attempts (last: %s)",
                          body.records, attempt, verdict.reason)
                return self._finish(body, dropped=("retry_exhausted", body.records))
            self._accounting.count(retries=1)
            if self._abort.wait(delay):
                return self._finish(body, dropped=("shutdown", body.records))

    def _attempt(self, route: Route, body: Body, failures: int) -> tuple[Verdict, Response | None]:
        headers = {"Content-Type": route.content_type}
        if route.authorization:
            headers["Authorization"] = route.authorization
        if body.encoding == "gzip":
            headers["Content-Encoding"] = "gzip"
        if self._transport is None:
            self._transport = self._new_transport()
        url = self._url_overrides.get(route.name, route.url)
        self._accounting.count(requests=1)
        try:
            response = self._transport.post(url, body.data, headers)
        except TransportError as exc:
            self._log(logging.WARNING, f"transport_{exc.kind}",
                      "dt_exporter could not reach %s (%s); will retry", _host(url), exc)
            if exc.kind in ("reset", "timeout"):  # the server may have taken it
                self._accounting.count(duplicates=body.records)
            return classify_error(exc.kind, failures), None
        return classify(response.status, response.headers, time.time()), response

    def _partial(self, route: Route, body: Body, response: Response | None) -> None:
        status, content = (response.status, response.body) if response else (200, b"")
        rejected, message = route.read_rejections(status, content)
        rejected = min(max(rejected, 0), body.records)
        if rejected or message:  # an OTLP 200 with an empty body is a plain success
            self._accounting.count(partial=1)
            self._log(logging.WARNING, f"partial_{route.name}",
                      "dt_exporter: Dynatrace accepted only part of a request to %s: %s",
                      route.name, message[:300] or "(no message)")
        self._finish(body, delivered=body.records - rejected,
                     dropped=("rejected_by_server", rejected) if rejected else None)

    def _split(self, route: Route, body: Body) -> None:
        halves = route.split(decompress(body.data, body.encoding))
        if halves is None:
            self._log(logging.ERROR, "record_too_large",
                      "dt_exporter: Dynatrace refused a single record as too large (413)")
            return self._finish(body, dropped=("record_too_large", body.records))
        parts = [
            Body(body.route, compress(half, body.encoding, self._gzip_level), route.count(half),
                 body.encoding, body.oldest_ns)
            for half in halves
        ]
        lost = body.records - sum(part.records for part in parts)
        self._finish(body, requeue=parts,
                     dropped=("record_too_large", lost) if lost else None)

    def _fall_back(self, route: Route) -> bool:
        if route.fallback_url is None or route.name in self._url_overrides:
            return False
        self._url_overrides[route.name] = route.fallback_url
        _log.warning("dt_exporter: %s answered 404; this tenant still uses the legacy path %s",
                     _host(route.url), route.fallback_url.split("/platform/", 1)[-1])
        return True

    def _log_permanent(self, route: Route, verdict: Verdict, response: Response | None) -> None:
        status = response.status if response else 0
        meaning = PERMANENT_MEANING.get(status, "unexpected answer")
        if status in (401, 403):
            meaning += f" (the {route.name} endpoint needs scope {route.scope})"
        detail = server_message(response.body) if response else ""
        self._log(logging.ERROR, verdict.reason, "dt_exporter: %s answered %d: %s%s",
                  route.name, status, meaning, f" — {detail}" if detail else "")


def _host(url: str) -> str:
    return url.split("/", 3)[2] if "://" in url else url


class ForkAware(Protocol):
    def after_fork_in_child(self) -> None: ...


def _after_fork() -> None:
    for owner in list(_FORK_AWARE):
        owner.after_fork_in_child()


#: Every live object with per-process state, held weakly (a collected exporter is simply skipped
#: after a fork); one process-wide fork hook serves them all.
_FORK_AWARE: weakref.WeakSet[ForkAware] = weakref.WeakSet()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def register_fork_hook(owner: ForkAware) -> None:
    """Call `owner.after_fork_in_child()` in every child forked from now on."""
    _FORK_AWARE.add(owner)
