"""OTLP mode: the same delivery path, protobuf to /api/v2/otlp/v1/logs, read by the emulator."""

from __future__ import annotations

import pytest
from _support import FAST, settle
from opentelemetry._logs import SeverityNumber

from dt_exporter import ConfigError, DynatraceLogExporter
from dt_exporter.testing import DynatraceEmulator, Reply


def otlp_exporter(dt: DynatraceEmulator) -> DynatraceLogExporter:
    return DynatraceLogExporter(endpoint=dt.url, token=dt.token, protocol="otlp", **FAST)



def test_records_arrive_over_otlp_with_severity_and_trace(emulator, make_records):
    """Protobuf requests, gzip, to the OTLP path; Dynatrace reads severity, body and ids."""
    exporter = otlp_exporter(emulator)
    records = make_records(4, severity=SeverityNumber.ERROR, with_span=True)
    exporter.export(records)
    assert settle(exporter).delivered == 4
    seen = emulator.wait_for_records(4)
    request = emulator.requests[0]
    assert request.path == "/api/v2/otlp/v1/logs"
    assert request.headers["content-type"] == "application/x-protobuf"
    assert request.headers["content-encoding"] == "gzip"
    assert [r.content for r in seen] == [f"record {i}" for i in range(4)]
    assert {r.loglevel for r in seen} == {"ERROR"}
    assert seen[0].trace_id == f"{records[0].log_record.trace_id:032x}"
    assert seen[0].attributes["service.name"] == "test-service"
    exporter.shutdown()


def test_otlp_503_is_retried_and_413_is_split(emulator, make_records):
    """The OTLP route shares the retry loop and the 413 split with the JSON route."""
    emulator.enqueue("otlp", Reply(503), Reply(503))
    emulator.max_request_bytes = 3_000
    exporter = otlp_exporter(emulator)
    exporter.export(make_records(100))
    stats = settle(exporter)
    assert stats.delivered == 100 and stats.retries == 2
    assert sorted(r.attributes["test.id"] for r in emulator.records) == list(range(100))
    assert any(r.status == 413 for r in emulator.requests)
    exporter.shutdown()


def test_otlp_partial_success_is_counted(emulator, make_records):
    """A 200 whose ExportLogsServiceResponse rejects records counts them rejected_by_server."""
    emulator.enqueue("otlp", Reply(partial_rejected=[0, 2, 4]))
    exporter = otlp_exporter(emulator)
    exporter.export(make_records(6))
    stats = settle(exporter)
    assert stats.dropped == {"rejected_by_server": 3} and stats.delivered == 3
    exporter.shutdown()


def test_otlp_without_an_endpoint_is_a_configuration_error():
    """OneAgent's local API takes no OTLP logs: saying so beats failing silently."""
    with pytest.raises(ConfigError, match="OneAgent"):
        DynatraceLogExporter(protocol="otlp")
