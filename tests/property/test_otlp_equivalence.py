"""dt_exporter._otlp decodes to exactly what the official OTLP encoder builds, for any batch.

Batches are genuine SDK records (Logger.emit → SimpleLogRecordProcessor →
InMemoryLogRecordExporter) across several resources and scopes, with bodies and attributes of
every AnyValue type. Strings hold no lone surrogates (the official encoder cannot serialise
them) and doubles no NaN (NaN != NaN makes message equality fail on equal bytes).
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import Logger, LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from dt_exporter import _otlp as otlp
from dt_exporter.limits import LimitProfile

#: No limit in this file is reachable: equivalence means nothing is cut.
UNLIMITED = LimitProfile(
    name="grail", max_key_bytes=10**9, max_value_bytes=10**9, max_attributes=10**9,
    max_values_per_attribute=10**9, max_nesting_depth=10**9, max_content_bytes=10**9,
)
# About 15 s in all on a 2-core CI machine.
SETTINGS = settings(max_examples=50, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

MEMORY = InMemoryLogRecordExporter()
#: Providers (one resource each); the last two resources are equal, so their records share a
#: ResourceLogs in both encoders.
RESOURCES = [
    Resource.create({"service.name": "checkout", "service.version": "2.1"}),
    Resource({"service.name": "billing", "k8s.pod.name": "b-1", "n": 3, "ratio": 0.5,
              "tags": ("a", "b"), "flag": True}, schema_url="https://opentelemetry.io/schemas/1.26.0"),
    Resource({"service.name": "twin"}),
    Resource({"service.name": "twin"}),
]
PROVIDERS = []
for _resource in RESOURCES:
    _provider = LoggerProvider(resource=_resource, shutdown_on_exit=False)
    _provider.add_log_record_processor(SimpleLogRecordProcessor(MEMORY))
    PROVIDERS.append(_provider)
#: Scopes per provider: bare, versioned, with schema URL and attributes.
SCOPE_ARGS: list[dict[str, Any]] = [
    {"name": "app"},
    {"name": "app.db", "version": "1.4.0"},
    {"name": "app.http", "version": "0.9", "schema_url": "https://opentelemetry.io/schemas/1.21.0",
     "attributes": {"scope.kind": "http", "scope.n": 7}},
]
LOGGERS: list[list[Logger]] = [
    [provider.get_logger(**args) for args in SCOPE_ARGS]  # type: ignore[misc]
    for provider in PROVIDERS
]

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
keys = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | text
    | st.binary(max_size=16)
)
any_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
attributes = st.dictionaries(keys, any_values, max_size=8)
severities = st.none() | st.sampled_from(list(SeverityNumber))


@st.composite
def emits(draw: st.DrawFn) -> dict[str, Any]:
    """The arguments of one Logger.emit, plus which provider and scope emit it."""
    context = None
    if draw(st.booleans()):
        span_context = SpanContext(
            trace_id=draw(st.integers(1, 2**128 - 1)),
            span_id=draw(st.integers(1, 2**64 - 1)),
            is_remote=False,
            trace_flags=TraceFlags(draw(st.sampled_from([0, 1, 3]))),
        )
        context = trace.set_span_in_context(NonRecordingSpan(span_context))
    return {
        "provider": draw(st.integers(0, len(PROVIDERS) - 1)),
        "scope": draw(st.integers(0, len(SCOPE_ARGS) - 1)),
        "timestamp": draw(st.none() | st.integers(1, 2**64 - 1)),
        "observed_timestamp": draw(st.none() | st.integers(1, 2**64 - 1)),
        "context": context,
        "severity_number": draw(severities),
        "severity_text": draw(st.none() | st.sampled_from(["INFO", "WARN", "ERROR", ""]) | text),
        "body": draw(any_values),
        "attributes": draw(attributes),
        "event_name": draw(st.none() | text),
    }


def emit_batch(batch: list[dict[str, Any]]) -> list[ReadableLogRecord]:
    """Emit each entry through its SDK logger and collect the exported records."""
    MEMORY.clear()
    for entry in batch:
        args = dict(entry)
        logger = LOGGERS[args.pop("provider")][args.pop("scope")]
        logger.emit(**args)
    records = list(MEMORY.get_finished_logs())
    MEMORY.clear()
    return records


def encode(records: list[ReadableLogRecord]) -> list[otlp.OtlpRequest]:
    truncations: collections.Counter[str] = collections.Counter()
    dropped: collections.Counter[str] = collections.Counter()
    requests = otlp.encode_log_requests(records, UNLIMITED, truncations=truncations,
                                        dropped=dropped)
    assert not truncations
    assert not dropped
    return requests


@pytest.fixture(autouse=True, scope="module")
def _shut_providers() -> Iterator[None]:
    yield
    for provider in PROVIDERS:
        provider.shutdown()


@settings(SETTINGS, max_examples=120)
@given(st.lists(emits(), min_size=1, max_size=12))
def test_decodes_to_the_official_encoders_message(batch: list[dict[str, Any]]) -> None:
    """Our bytes parse to a message equal to encode_logs() of the same SDK records."""
    records = emit_batch(batch)
    (request,) = encode(records)
    assert request.records == len(records)
    assert ExportLogsServiceRequest.FromString(request.data) == encode_logs(records)


@SETTINGS
@given(st.lists(emits(), min_size=2, max_size=12))
def test_split_halves_hold_every_record_in_order(batch: list[dict[str, Any]]) -> None:
    """split_request gives two valid requests whose records, in order, are the original's."""
    (request,) = encode(emit_batch(batch))
    halves = otlp.split_request(request.data)
    assert halves is not None

    def flat(data: bytes) -> list[tuple[bytes, str, bytes, str, bytes]]:
        message = ExportLogsServiceRequest.FromString(data)
        return [(rl.resource.SerializeToString(), rl.schema_url, sl.scope.SerializeToString(),
                 sl.schema_url, lr.SerializeToString())
                for rl in message.resource_logs for sl in rl.scope_logs
                for lr in sl.log_records]

    first, second = halves
    assert otlp.count_records(first) == request.records // 2
    assert flat(first) + flat(second) == flat(request.data)


@SETTINGS
@given(st.lists(emits(), min_size=1, max_size=12), st.integers(300, 5_000))
def test_cut_requests_fit_and_keep_every_record(
    batch: list[dict[str, Any]], max_request_bytes: int
) -> None:
    """Cut into small requests, every request fits and records are kept or counted as dropped."""
    records = emit_batch(batch)
    truncations: collections.Counter[str] = collections.Counter()
    dropped: collections.Counter[str] = collections.Counter()
    requests = otlp.encode_log_requests(records, UNLIMITED, max_request_bytes=max_request_bytes,
                                        truncations=truncations, dropped=dropped)
    assert all(len(r.data) <= max_request_bytes for r in requests)
    assert all(otlp.count_records(r.data) == r.records for r in requests)
    assert sum(r.records for r in requests) + dropped["record_too_large"] == len(records)
