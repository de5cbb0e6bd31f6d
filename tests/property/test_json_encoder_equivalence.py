"""The JSON fast path writes exactly what RecordMapper.map defines, for any record."""

from __future__ import annotations

from collections import Counter

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from dt_exporter import CLASSIC, GRAIL
from dt_exporter.json_encoder import RecordEncoder
from dt_exporter.mapping import RecordMapper

keys = st.sampled_from(["user.id", "http.status", "content", "service.name", "x" * 120,
                        "loglevel", "a.b", "event.name", "dt.trace_sampled"])
plain = st.one_of(st.text(max_size=40), st.integers(-(2**70), 2**70), st.booleans(),
                  st.floats(allow_nan=True, allow_infinity=True), st.none())
values = st.one_of(plain, st.text(min_size=240, max_size=300), st.binary(max_size=8),
                   st.lists(plain, max_size=4), st.dictionaries(st.text(max_size=5), plain,
                                                                  max_size=3))
records = st.lists(
    st.fixed_dictionaries({
        "attributes": st.dictionaries(keys, values, max_size=6),
        "body": st.one_of(st.text(max_size=60), st.none(), st.integers(),
                          st.integers(4200, 4600).map(lambda n: "é" * n),  # over classic 8 kB
                          st.dictionaries(st.text(max_size=4), plain, max_size=2)),
        "severity": st.sampled_from([None, *SeverityNumber]),
        "text": st.sampled_from([None, "warning", "Fatal", "info"]),
        "span": st.booleans(),
        "event_name": st.sampled_from([None, "deploy"]),
        "resource": st.sampled_from([{"service.name": "a"}, {"service.name": "b", "user.id": 1},
                                     {"service.name": "c" * 300}]),
    }),
    min_size=1, max_size=8,
)


def build(specs):
    memory = InMemoryLogRecordExporter()
    resources = {}
    out = []
    for spec in specs:
        key = tuple(sorted(spec["resource"].items()))
        if key not in resources:
            provider = LoggerProvider(resource=Resource.create(spec["resource"]),
                                      shutdown_on_exit=False)
            provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
            resources[key] = provider.get_logger("scope", "1.0")
        context = None
        if spec["span"]:
            context = trace.set_span_in_context(NonRecordingSpan(SpanContext(
                0xABC, 0xDEF, False, TraceFlags(TraceFlags.SAMPLED))))
        resources[key].emit(body=spec["body"], attributes=spec["attributes"], context=context,
                            severity_number=spec["severity"], severity_text=spec["text"],
                            event_name=spec["event_name"], timestamp=1_700_000_000_123_456_789)
        out.append(memory.get_finished_logs()[-1])
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records, st.sampled_from([GRAIL, CLASSIC]))
def test_encoder_output_equals_the_mappers_objects_and_counts(specs, profile):
    """Parsed back, the encoder's bytes equal RecordMapper.map's objects, with the same cut
    counts, whether a record took the fast path or not (the second pass is mostly fast)."""
    batch = build(specs)
    encoder_cuts: Counter[str] = Counter()
    encoder = RecordEncoder(RecordMapper(profile, encoder_cuts))
    for _ in range(2):
        reference_cuts: Counter[str] = Counter()
        reference = RecordMapper(profile, reference_cuts)
        encoder_cuts.clear()
        parts = encoder.encode(batch)
        expected = [orjson.loads(orjson.dumps(reference.map(r))) for r in batch]
        assert [orjson.loads(p) for p in parts] == expected
        assert encoder_cuts == reference_cuts


def test_plain_records_take_the_fast_path():
    """Records of the common shape are written without the mapper once their keys are known."""
    batch = build([{"attributes": {"user.id": "u1", "http.status": 200}, "body": "hi",
                    "severity": SeverityNumber.INFO, "text": None, "span": True,
                    "event_name": None, "resource": {"service.name": "a"}}] * 3)
    encoder = RecordEncoder(RecordMapper(GRAIL, Counter()))
    encoder.encode(batch)
    assert encoder.fast_records == 2  # the first record teaches it the keys
    (part,) = encoder.encode(batch[:1])
    assert orjson.loads(part)["trace_id"] == f"{0xABC:032x}"
    assert encoder.fast_records == 3
