"""The exporter's own lines: never into OpenTelemetry's handlers, always visible to the user."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from dt_exporter import _selflog


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root logger; each test sets its handlers itself (pytest's own capture handler, a
    handler that would show our lines, is on it during the test) and they are put back."""
    logger = logging.getLogger()
    saved = logger.handlers[:]
    yield logger
    logger.handlers[:] = saved


def otel_handler() -> tuple[logging.Handler, InMemoryLogRecordExporter]:
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    return LoggingHandler(logger_provider=provider), memory


def test_own_lines_and_our_urllib3_lines_never_reach_opentelemetry(root, capsys) -> None:
    """With OpenTelemetry's handler on the root, our warning and urllib3's line made during our
    request are refused; the application's lines, and urllib3's outside our requests, pass."""
    handler, memory = otel_handler()
    root.handlers[:] = [handler]
    _selflog.install()
    logging.getLogger("dt_exporter.test").warning("ours")
    with _selflog.sending():
        logging.getLogger("urllib3.connectionpool").warning("our request")
    logging.getLogger("urllib3.connectionpool").warning("the app's request")
    logging.getLogger("app").warning("the app")
    bodies = [record.log_record.body for record in memory.get_finished_logs()]
    assert bodies == ["the app's request", "the app"]
    assert "ours" in capsys.readouterr().err  # the only other handler is OpenTelemetry's


def test_a_refusing_handler_does_not_count_as_showing_our_lines(root, capsys) -> None:
    """DynatraceHandler refuses our lines too: with it the only handler, they go to stderr."""

    class Refusing(logging.Handler):
        refuses_own_records = True

        def emit(self, record: logging.LogRecord) -> None:
            raise AssertionError("never called for our lines in this test")

    refusing = Refusing()
    refusing.addFilter(lambda record: not record.name.startswith("dt_exporter"))
    root.handlers[:] = [refusing]
    _selflog.install()
    logging.getLogger("dt_exporter.test").error("token refused")
    assert "token refused" in capsys.readouterr().err


def test_a_user_handler_shows_our_lines_so_stderr_stays_quiet(root, capsys) -> None:
    """When the application has a handler of its own, our line goes there, not twice."""
    stream = io.StringIO()
    root.handlers[:] = [logging.StreamHandler(stream)]
    _selflog.install()
    logging.getLogger("dt_exporter.test").warning("once")
    assert "once" in stream.getvalue()
    assert "once" not in capsys.readouterr().err
