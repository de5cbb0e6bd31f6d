"""DynatraceHandler without a network: what `emit` captures and refuses, how a `LogRecord` maps
(held key for key to the exporter path's object for the same call), overflow and accounting.

The handlers here never start their worker (`_threadless`, the state of an interpreter at exit)
and never submit a body, so nothing is sent; the mapping runs on the test's thread.
"""

from __future__ import annotations

import gzip
import logging
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from dt_exporter import ConfigError, DynatraceHandler
from dt_exporter.handler import _MESSAGE, RECORD_FIELDS, _PendingBody
from dt_exporter.mapping import RecordMapper

TARGET = {"endpoint": "http://127.0.0.1:9", "token": "dt0c01.UNIT.TEST"}
RESOURCE = Resource.create({"service.name": "unit-service", "deployment.environment": "test"})


_QUIET: list[DynatraceHandler] = []


def quiet(**settings: Any) -> DynatraceHandler:
    """A handler whose worker never starts: records stay in its buffer until taken (and are
    forgotten after the test, so that closing it sends nothing)."""
    handler = DynatraceHandler(resource=RESOURCE, **{**TARGET, **settings})
    handler._threadless = True
    _QUIET.append(handler)
    return handler


@pytest.fixture(autouse=True)
def _forget_buffered_records() -> Iterator[None]:
    yield
    while _QUIET:
        handler = _QUIET.pop()
        handler._buffer.clear()
        handler.close()


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("tests.unit.handler")
    log.setLevel(1)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)


class Paths:
    """One logger, two handlers: OpenTelemetry's (into an in-memory SDK pipeline, mapped by
    `RecordMapper.map` as the exporter maps it) and a DynatraceHandler that keeps its records."""

    def __init__(self, logger: logging.Logger, formatter: logging.Formatter | None = None):
        from opentelemetry.instrumentation.logging.handler import LoggingHandler

        self.memory = InMemoryLogRecordExporter()
        provider = LoggerProvider(resource=RESOURCE, shutdown_on_exit=False)
        provider.add_log_record_processor(SimpleLogRecordProcessor(self.memory))
        otel = LoggingHandler(logger_provider=provider)
        self.handler = quiet()
        if formatter is not None:
            otel.setFormatter(formatter)
            self.handler.setFormatter(formatter)
        logger.addHandler(otel)
        logger.addHandler(self.handler)

    def objects(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(exporter path's object, handler's object) per call."""
        with warnings.catch_warnings():  # the SDK warns on values it stringifies
            warnings.simplefilter("ignore")
            sdk = list(self.memory.get_finished_logs())
        mapper = RecordMapper(self.handler.config.limits, Counter())  # type: ignore[union-attr]
        ours = [self.handler._map_record(item) for item in self.handler._buffer]
        assert len(sdk) == len(ours)
        return [(mapper.map(record), mine) for record, mine in zip(sdk, ours, strict=True)]


def _raise() -> None:
    raise ValueError("card declined", 402)


CALLS: list[tuple[str, Callable[[logging.Logger], None]]] = [
    ("info with args", lambda log: log.info("order %s took %d ms", "A-1", 42)),
    ("debug", lambda log: log.debug("cache miss")),
    ("warning", lambda log: log.warning("slow")),
    ("error", lambda log: log.error("failed")),
    ("critical", lambda log: log.critical("down")),
    ("level 5 (below DEBUG, no name)", lambda log: log.log(5, "very verbose")),
    ("level 25 (between INFO and WARNING)", lambda log: log.log(25, "notice")),
    ("level 60 (above CRITICAL)", lambda log: log.log(60, "beyond")),
    ("extra scalars", lambda log: log.info("x", extra={"user.id": "u-1", "n": 3, "ok": True,
                                                          "ratio": 0.5, "nothing": None})),
    ("extra named like a field", lambda log: log.info("x", extra={"content": "c", "loglevel": 1})),
    ("extra nested", lambda log: log.info("x", extra={"http": {"method": "GET", "code": 200},
                                                         "tags": ["a", "b"]})),
    ("extra too long", lambda log: log.info("x", extra={"big": "v" * 100_000})),
    ("event name (stable key)", lambda log: log.info("x", extra={"otel.event.name": "ev"})),
    ("event name (deprecated key)", lambda log: log.info("x", extra={"event.name": "old"})),
    ("content over the limit", lambda log: log.info("%s", "y" * 100_000)),
    ("non-str message", lambda log: log.info({"a": 1})),
    ("exception", lambda log: _log_exception(log)),
]


def _log_exception(log: logging.Logger) -> None:
    try:
        _raise()
    except ValueError:
        log.exception("payment failed")


@pytest.mark.parametrize(("case", "call"), CALLS, ids=[case for case, _ in CALLS])
def test_a_record_maps_to_the_exporter_paths_object(logger, case, call):
    """For the same log call the handler makes exactly the object the exporter path makes
    (OpenTelemetry's LoggingHandler, the SDK record, RecordMapper.map), inside a span."""
    paths = Paths(logger)
    with TracerProvider(shutdown_on_exit=False).get_tracer("t").start_as_current_span("s"):
        call(logger)
    ((expected, got),) = paths.objects()
    assert got == expected
    assert "trace_id" in got, case


def test_outside_a_span_there_are_no_trace_ids_and_objects_still_match(logger):
    """Without a current span no trace_id / span_id is written, on either path."""
    paths = Paths(logger)
    logger.info("no span")
    ((expected, got),) = paths.objects()
    assert got == expected
    assert not {"trace_id", "span_id", "dt.trace_sampled"} & got.keys()


def test_a_formatter_on_the_handler_makes_the_content(logger):
    """With a formatter set, the content is the formatted line, as OpenTelemetry's handler does."""
    paths = Paths(logger, logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.warning("disk %d%% full", 91)
    ((expected, got),) = paths.objects()
    assert got == expected
    assert got["content"] == "WARNING tests.unit.handler: disk 91% full"


@pytest.mark.parametrize(("level", "name", "loglevel"), [
    (logging.DEBUG, None, "DEBUG"), (logging.INFO, None, "INFO"), (logging.WARNING, None, "WARN"),
    (logging.ERROR, None, "ERROR"), (logging.CRITICAL, None, "CRITICAL"), (25, None, "INFO"),
    (60, None, "CRITICAL"), (5, "TRACE", "DEBUG"), (5, None, None),
])
def test_levels_follow_the_exporters_severity_table(logger, level, name, loglevel):
    """Python levels become Dynatrace loglevels through OpenTelemetry's severity numbers and
    the mapper's table; below DEBUG the level's name decides (first-letter rule), or none."""
    if name:
        logging.addLevelName(level, name)
    try:
        handler = quiet()
        logger.addHandler(handler)
        logger.log(level, "message")
        (item,) = handler._buffer
        assert handler._map_record(item).get("loglevel") == loglevel
    finally:
        if name:
            logging.addLevelName(level, f"Level {level}")


def test_exception_attributes_and_span_ids(logger):
    """exc_info becomes exception.type / .message / .stacktrace; ids are the span's, in hex."""
    handler = quiet()
    logger.addHandler(handler)
    with TracerProvider(shutdown_on_exit=False).get_tracer("t").start_as_current_span("s") as span:
        _log_exception(logger)
    (item,) = handler._buffer
    got = handler._map_record(item)
    context = span.get_span_context()
    assert got["trace_id"] == f"{context.trace_id:032x}"
    assert got["span_id"] == f"{context.span_id:016x}"
    assert got["dt.trace_sampled"] is True
    assert got["exception.type"] == "ValueError"
    assert got["exception.message"] == "card declined"
    assert "Traceback" in got["exception.stacktrace"] and "_raise" in got["exception.stacktrace"]
    assert got["otel.scope.name"] == "tests.unit.handler"
    assert got["service.name"] == "unit-service"


def test_the_message_is_formatted_when_logged_not_later(logger):
    """args are formatted on the caller's thread: mutating them afterwards changes nothing."""
    handler = quiet()
    logger.addHandler(handler)
    cart = ["apple"]
    logger.info("cart %s", cart)
    cart.append("pear")
    (item,) = handler._buffer
    assert handler._map_record(item)["content"] == "cart ['apple']"


def test_the_record_is_not_kept_and_its_attributes_are_taken_at_the_call():
    """emit keeps what the mapping needs, not the LogRecord (it is free once logging is done
    with it); attributes set on the record afterwards do not reach Dynatrace."""
    handler = quiet()
    record = logging.makeLogRecord({"name": "app", "msg": "hi", "levelno": 20,
                                    "levelname": "INFO", "user.id": "u-1"})
    handler.handle(record)
    record.__dict__["user.id"] = "changed"
    record.__dict__["late"] = True
    alive = weakref.ref(record)
    del record
    assert alive() is None
    (item,) = handler._buffer
    got = handler._map_record(item)
    assert got["user.id"] == "u-1" and "late" not in got


def test_record_fields_are_opentelemetrys_reserved_names():
    """The LogRecord fields that are not attributes are the ones OpenTelemetry's handler skips,
    and every field a stdlib LogRecord has is among them."""
    from opentelemetry.instrumentation.logging.handler import _RESERVED_ATTRS

    assert frozenset(_RESERVED_ATTRS) == RECORD_FIELDS
    assert set(vars(logging.makeLogRecord({}))) <= RECORD_FIELDS


@pytest.mark.parametrize("name", ["dt_exporter", "dt_exporter._channel", "urllib3",
                                  "urllib3.connectionpool"])
def test_own_and_urllib3_records_are_never_handled(name):
    """Records of dt_exporter's and urllib3's loggers are refused before they count."""
    handler = quiet()
    handler.handle(logging.makeLogRecord({"name": name, "msg": "pool", "levelno": 40}))
    assert not handler._buffer
    assert handler.stats().received == 0


def test_overflow_drops_the_oldest_and_counts_them(logger):
    """A full buffer drops its oldest records, counted queue_full; stats stay balanced."""
    handler = quiet(max_buffered_records=5)
    logger.addHandler(handler)
    for i in range(12):
        logger.info("record %d", i)
    stats = handler.stats()
    assert [item[_MESSAGE] for item in handler._buffer] == [f"record {i}" for i in range(7, 12)]
    assert stats.received == 12 and stats.queued_records == 5
    assert stats.dropped == {"queue_full": 7}
    assert stats.balanced


def test_a_record_that_cannot_be_formatted_is_counted_and_reported_once(capsys):
    """Wrong args never raise into the caller: counted unmappable, handleError once, not per
    call."""
    handler = quiet()
    for word in ("many", "more"):
        handler.handle(logging.makeLogRecord({"msg": "%d items", "args": (word,)}))
    stats = handler.stats()
    assert stats.dropped == {"unmappable": 2} and stats.balanced
    assert capsys.readouterr().err.count("--- Logging error ---") == 1


def test_filters_of_the_handler_apply(logger):
    """A handler filter that refuses a record keeps it out (and out of the books)."""
    handler = quiet()
    handler.addFilter(lambda record: "secret" not in record.getMessage())
    logger.addHandler(handler)
    logger.info("public")
    logger.info("a secret")
    assert [item[_MESSAGE] for item in handler._buffer] == ["public"]
    assert handler.stats().received == 1


def test_records_after_close_count_as_already_shutdown(logger):
    """close() stops accepting: later records are counted, never buffered."""
    handler = quiet()
    logger.addHandler(handler)
    handler.close()
    logger.info("late")
    stats = handler.stats()
    assert stats.dropped == {"already_shutdown": 1} and stats.balanced
    assert not handler._buffer


def test_bad_keyword_settings_raise():
    """Configuration passed by keyword fails loudly, like the exporter's."""
    with pytest.raises(ConfigError) as raised:
        DynatraceHandler(gzip_level=42, **TARGET)
    assert raised.value.setting == "DT_EXPORTER_GZIP_LEVEL"


def test_otlp_by_keyword_is_refused():
    """The handler writes JSON log ingest only: protocol='otlp' by keyword is an error."""
    with pytest.raises(ConfigError) as raised:
        DynatraceHandler(protocol="otlp", **TARGET)
    assert raised.value.setting == "DT_EXPORTER_PROTOCOL"


def test_otlp_from_the_environment_means_json_for_the_handler(monkeypatch):
    """DT_EXPORTER_PROTOCOL=otlp (meant for the exporter) leaves the handler on JSON ingest."""
    monkeypatch.setenv("DT_ENDPOINT", TARGET["endpoint"])
    monkeypatch.setenv("DT_API_TOKEN", TARGET["token"])
    monkeypatch.setenv("DT_EXPORTER_PROTOCOL", "otlp")
    handler = DynatraceHandler()
    assert handler.config is not None and handler.config.protocol == "json"
    assert handler.config.logs_url.endswith("/api/v2/logs/ingest")


def test_bad_environment_disables_and_counts_misconfigured(monkeypatch, logger):
    """From the environment alone a bad setting logs one error and every record counts as
    misconfigured; nothing raises."""
    monkeypatch.setenv("DT_EXPORTER_GZIP_LEVEL", "42")
    handler = DynatraceHandler()
    assert handler.config is None and handler.config_error is not None
    logger.addHandler(handler)
    logger.info("a")
    logger.info("b")
    stats = handler.stats()
    assert stats.received == 2 and stats.dropped == {"misconfigured": 2} and stats.balanced
    assert handler.flush(0.1)
    handler.close()


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
def test_a_pending_body_is_one_json_array_of_every_chunk(encoding):
    """Chunks added one by one come out as one JSON array (gzipped or not) of all their
    objects, with the record count, uncompressed size and oldest timestamp kept."""
    chunks = [[{"content": "a"}, {"content": "b"}], [{"content": "c"}],
              [{"n": i} for i in range(5)]]
    body = _PendingBody(encoding, 1)
    for stamp, chunk in zip([30, 10, 20], chunks, strict=True):
        body.add(orjson.dumps(chunk), len(chunk), stamp)
    data = body.finish()
    plain = gzip.decompress(data) if encoding == "gzip" else data
    assert orjson.loads(plain) == [obj for chunk in chunks for obj in chunk]
    assert body.records == 8 and body.size == len(plain) and body.oldest_ns == 10


_LONG_TEXT = st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=3), st.integers(0, 3000))
_TEXT = st.one_of(st.text(max_size=12), _LONG_TEXT)
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _TEXT,
                     st.binary(max_size=16))
_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(st.text(min_size=1, max_size=8), children,
                                               max_size=4)),
    max_leaves=12,
)
_EXTRA = st.dictionaries(
    st.text(min_size=1, max_size=12).filter(lambda key: key not in RECORD_FIELDS), _VALUES,
    max_size=6)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extra=_EXTRA, level=st.integers(1, 70), message=_TEXT)
def test_any_extra_maps_as_on_the_exporter_path(extra, level, message):
    """For any extra attributes (scalars, long text, bytes, big ints, NaN, nested maps and lists;
    nested keys non-empty, which the SDK drops), level and message the handler's object
    equals the exporter path's."""
    log = logging.getLogger("tests.unit.handler.property")
    log.setLevel(1)
    log.propagate = False
    paths = Paths(log)
    try:
        log.log(level, "%s", message, extra=extra)
        ((expected, got),) = paths.objects()
        assert got == expected
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)
