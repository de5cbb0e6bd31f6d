"""DynatraceHandler against the emulator over real HTTP on 127.0.0.1: the same records as the
exporter path, flush and close, eight threads at once, a forked child, interpreter exit."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from _support import FAST
from _support import settle as _settle
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from dt_exporter import DeliveryStats, DynatraceHandler, DynatraceLogExporter, setup_dynatrace
from dt_exporter.testing import DynatraceEmulator

RESOURCE = Resource.create({"service.name": "handler-it", "service.version": "1.2.3"})


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("tests.integration.handler")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


def handler_for(dt: DynatraceEmulator, **settings: Any) -> DynatraceHandler:
    return DynatraceHandler(resource=RESOURCE, **{"endpoint": dt.url, "token": dt.token, **FAST,
                                                  **settings})


def settle(handler: DynatraceHandler) -> DeliveryStats:
    return _settle(handler, 20.0)


def test_records_arrive_as_the_exporter_paths_do(emulator, logger):
    """The same log calls through OpenTelemetry's handler + DynatraceLogExporter and through
    DynatraceHandler reach Dynatrace as the same objects (resource, scope, attributes, ids,
    level, content, timestamp)."""
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    exporter = DynatraceLogExporter(endpoint=emulator.url, token=emulator.token, **FAST)
    provider = LoggerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger.addHandler(LoggingHandler(logger_provider=provider))
    handler = handler_for(emulator)
    logger.addHandler(handler)
    with TracerProvider(shutdown_on_exit=False).get_tracer("t").start_as_current_span("s"):
        logger.info("order %s placed", "A-1", extra={"order.total": 12.5, "items": 3})
        logger.warning("slow: %d ms", 900, extra={"http": {"route": "/pay", "code": 200}})
        try:
            raise KeyError("sku-7")
        except KeyError:
            logger.exception("lookup failed")
    logger.debug("outside any span", extra={"otel.event.name": "cache.miss"})
    assert exporter.force_flush(20_000)
    stats = settle(handler)
    assert stats.delivered == 4 and exporter.stats().delivered == 4
    received = [record.raw for record in emulator.wait_for_records(8)]
    assert all(isinstance(raw, dict) for raw in received)
    copies = Counter(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS) for raw in received)
    assert sorted(copies.values()) == [2, 2, 2, 2], "each call: one identical object per path"
    by_path = {"first": [orjson.loads(key) for key in copies]}
    levels = {raw["content"]: raw.get("loglevel") for raw in by_path["first"]}
    assert levels == {"order A-1 placed": "INFO", "slow: 900 ms": "WARN",
                      "lookup failed": "ERROR", "outside any span": "DEBUG"}
    provider.shutdown()


def test_flush_delivers_everything_in_few_requests(emulator, logger):
    """flush() returns once every record emitted before it is at Dynatrace; the handler's
    records share requests (not one per record)."""
    handler = handler_for(emulator)
    logger.addHandler(handler)
    for i in range(3000):
        logger.info("record %d", i, extra={"seq": i})
    stats = settle(handler)
    assert stats.delivered == 3000 and stats.received == 3000
    assert sorted(r.attributes["seq"] for r in emulator.records) == list(range(3000))
    assert stats.requests <= 10
    assert emulator.requests[0].headers.get("content-encoding") == "gzip"


def test_eight_threads_logging_at_once_lose_nothing(emulator, logger):
    """Eight threads logging concurrently: every record arrives exactly once, stats balanced."""
    handler = handler_for(emulator, max_buffered_records=100_000)
    logger.addHandler(handler)
    per_thread = 2500
    start = threading.Barrier(8)

    def work(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            logger.info("thread %d record %d", t, i, extra={"t": t, "i": i})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = settle(handler)
    assert stats.received == stats.delivered == 8 * per_thread, stats
    seen = sorted((r.attributes["t"], r.attributes["i"]) for r in emulator.records)
    assert seen == [(t, i) for t in range(8) for i in range(per_thread)]


def test_stats_count_buffered_records_as_queued_and_stay_balanced(emulator, logger):
    """While records wait in the handler's buffer, stats() counts them as queued."""
    handler = handler_for(emulator)
    handler._threadless = True  # no worker: the records stay buffered until flush
    logger.addHandler(handler)
    for i in range(10):
        logger.info("waiting %d", i)
    stats = handler.stats()
    assert stats.received == 10 and stats.queued_records == 10 and stats.balanced
    assert settle(handler).delivered == 10


def test_close_delivers_what_is_buffered(emulator, logger):
    """close() hands over what is buffered and delivers it before it returns."""
    handler = handler_for(emulator)
    logger.addHandler(handler)
    for i in range(50):
        logger.info("closing %d", i)
    handler.close()
    stats = handler.stats()
    assert stats.delivered == 50 and stats.balanced
    assert len(emulator.records) == 50


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_forked_child_has_its_own_worker_and_books(emulator, logger):
    """After fork the child sends only its own records with its own worker; the parent's
    buffered records stay the parent's; each record arrives once."""
    handler = handler_for(emulator)
    handler._threadless = True  # the parent's records wait in its buffer across the fork
    logger.addHandler(handler)
    for i in range(5):
        logger.info("parent", extra={"who": "parent", "i": i})
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            for i in range(7):
                logger.info("child", extra={"who": "child", "i": i})
            flushed = handler.flush(10)
            stats = handler.stats()
            code = 0 if flushed and stats.received == stats.delivered == 7 else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    stats = settle(handler)
    assert stats.received == stats.delivered == 5
    seen = sorted((r.attributes["who"], r.attributes["i"]) for r in emulator.records)
    assert seen == [*(("child", i) for i in range(7)), *(("parent", i) for i in range(5))]


def run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DT_", "OTEL_"))}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=clean | env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_interpreter_exit_delivers_without_flush_or_close(emulator):
    """A script that logs and ends (no flush, no close) delivers every record: logging's own
    shutdown closes the handler, within DT_EXPORTER_SHUTDOWN_TIMEOUT."""
    done = run("""
        import logging
        from dt_exporter import DynatraceHandler
        logging.getLogger().addHandler(DynatraceHandler())
        logging.getLogger().setLevel(logging.INFO)
        for i in range(200):
            logging.getLogger("app").info("exit %d", i)
    """, {"DT_ENDPOINT": emulator.url, "DT_API_TOKEN": emulator.token})
    assert done.returncode == 0, done.stderr
    assert sorted(r.content for r in emulator.records) == sorted(f"exit {i}" for i in range(200))


def test_records_logged_while_the_interpreter_exits_are_delivered(emulator):
    """Records logged from an atexit hook, when (3.12+) no thread may start any more, are
    delivered by close() on the exiting thread."""
    done = run("""
        import atexit, logging
        from dt_exporter import DynatraceHandler
        logging.getLogger().addHandler(DynatraceHandler())
        logging.getLogger().setLevel(logging.INFO)

        def last_words():
            for i in range(20):
                logging.getLogger("app").info("at exit %d", i)

        atexit.register(last_words)  # runs before logging's shutdown (atexit is LIFO)
    """, {"DT_ENDPOINT": emulator.url, "DT_API_TOKEN": emulator.token})
    assert done.returncode == 0, done.stderr
    assert sorted(r.content for r in emulator.records) == sorted(
        f"at exit {i}" for i in range(20))


def test_setup_dynatrace_fast_handler_installs_the_handler(emulator):
    """setup_dynatrace(fast_handler=True) puts a DynatraceHandler on the root logger (not
    OpenTelemetry's); force_flush delivers its records and shutdown removes and closes it."""
    setup = setup_dynatrace("fast-svc", set_global=False, fast_handler=True,
                            endpoint=emulator.url, token=emulator.token, **FAST)
    try:
        assert isinstance(setup.handler, DynatraceHandler)
        assert setup.handler in logging.getLogger().handlers
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger("fast.app").info("through the fast handler")
        assert setup.force_flush(20_000)
        (record,) = emulator.records
        assert record.content == "through the fast handler"
        assert record.attributes["service.name"] == "fast-svc"
        assert record.attributes["otel.scope.name"] == "fast.app"
    finally:
        setup.shutdown()
    assert setup.handler not in logging.getLogger().handlers
    assert setup.handler.stats().balanced


def test_close_against_a_dead_endpoint_counts_what_it_could_not_send(logger):
    """With nothing listening, close() gives up at DT_EXPORTER_SHUTDOWN_TIMEOUT and every
    record is accounted for as dropped (shutdown), none lost silently."""
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = DynatraceHandler(endpoint=f"http://127.0.0.1:{port}", token="dt0c01.DEAD.END",
                               shutdown_timeout_s=0.5, **FAST)
    logger.addHandler(handler)
    for i in range(30):
        logger.info("into the void %d", i)
    handler.close()
    stats = handler.stats()
    assert stats.received == 30 and stats.delivered == 0 and stats.balanced, stats
    assert sum(stats.dropped.values()) == 30 and set(stats.dropped) <= {"shutdown",
                                                                       "retry_exhausted"}
