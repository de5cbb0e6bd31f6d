"""DynatraceLogExporter against the emulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from _support import FAST, settle
from opentelemetry._logs import SeverityNumber

from dt_exporter import DynatraceLogExporter
from dt_exporter.testing import DynatraceEmulator, Reply

CANARY = "dt0c01.CANARYCANARYCANARYCANARY00." + "S" * 64


def exporter_for(dt: DynatraceEmulator, **settings: Any) -> DynatraceLogExporter:
    merged: dict[str, Any] = {"endpoint": dt.url, "token": dt.token, **FAST}
    merged.update(settings)
    return DynatraceLogExporter(**merged)



def test_records_arrive_as_dynatrace_reads_them(emulator, make_records):
    """Severity, content, trace ids, resource and scope survive Dynatrace's own reading."""
    exporter = exporter_for(emulator)
    records = make_records(3, severity=SeverityNumber.WARN, with_span=True)
    exporter.export(records)
    stats = settle(exporter)
    seen = emulator.wait_for_records(3)
    assert stats.delivered == 3
    assert [r.content for r in seen] == ["record 0", "record 1", "record 2"]
    assert {r.loglevel for r in seen} == {"WARN"}
    for sent, got in zip(records, seen, strict=True):
        assert got.trace_id == f"{sent.log_record.trace_id:032x}"
        assert got.span_id == f"{sent.log_record.span_id:016x}"
        assert got.timestamp == sent.log_record.timestamp // 1_000_000
        assert got.attributes["service.name"] == "test-service"
        assert got.attributes["otel.scope.name"] == "tests"
    assert emulator.requests[0].headers.get("content-encoding") == "gzip"
    exporter.shutdown()


def test_503_three_times_then_success_loses_nothing(emulator, make_records):
    """Retryable answers are retried with backoff until the body is delivered."""
    emulator.enqueue("logs", Reply(503), Reply(503), Reply(503))
    exporter = exporter_for(emulator)
    exporter.export(make_records(50))
    stats = settle(exporter)
    assert stats.delivered == 50 and stats.retries == 3
    assert sorted(r.attributes["test.id"] for r in emulator.records) == list(range(50))
    assert [r.status for r in emulator.requests] == [503, 503, 503, 204]
    exporter.shutdown()


def test_429_retry_after_is_honoured(emulator, make_records):
    """A 429 with Retry-After: 1 delays the next attempt by about a second, not the backoff."""
    emulator.enqueue("logs", Reply(429, headers={"Retry-After": "1"}))
    exporter = exporter_for(emulator)
    started = time.monotonic()
    exporter.export(make_records(5))
    stats = settle(exporter)
    waited = time.monotonic() - started
    assert stats.delivered == 5
    assert waited >= 0.9, f"retried after {waited:.2f}s despite Retry-After: 1"
    exporter.shutdown()


def test_413_splits_until_every_record_is_delivered(emulator, make_records):
    """Bodies over the server's limit are halved and resent; nothing is lost."""
    emulator.max_request_bytes = 4_000
    exporter = exporter_for(emulator)
    exporter.export(make_records(120))
    stats = settle(exporter)
    assert stats.delivered == 120
    assert sorted(r.attributes["test.id"] for r in emulator.records) == list(range(120))
    assert any(r.status == 413 for r in emulator.requests)
    exporter.shutdown()


def test_single_record_over_the_server_limit_is_dropped_and_counted(emulator, make_records):
    """When even one record is too large for the server, it is dropped as record_too_large."""
    emulator.max_request_bytes = 600
    exporter = exporter_for(emulator)
    exporter.export(make_records(1, body=lambda i: "x" * 2_000))
    stats = settle(exporter)
    assert stats.dropped == {"record_too_large": 1}
    exporter.shutdown()


def test_partial_success_counts_rejected_records(emulator, make_records):
    """A 200 naming rejected records counts them as rejected_by_server, the rest delivered."""
    emulator.enqueue("logs", Reply(partial_rejected=[1, 3]))
    exporter = exporter_for(emulator)
    exporter.export(make_records(5))
    stats = settle(exporter)
    assert stats.delivered == 3
    assert stats.dropped == {"rejected_by_server": 2}
    assert stats.partial_successes == 1
    exporter.shutdown()


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_permanent_failures_are_not_retried(emulator, make_records, status):
    """Permanent answers cost one request and are counted under their code."""
    emulator.enqueue("logs", Reply(status))
    exporter = exporter_for(emulator)
    exporter.export(make_records(4))
    stats = settle(exporter)
    assert len(emulator.requests) == 1
    assert stats.dropped == {f"http_{status}": 4}
    exporter.shutdown()


def test_redirects_are_not_followed(emulator, make_records):
    """A 307 elsewhere is a permanent failure: the token is never forwarded."""
    emulator.enqueue("logs", Reply(307, headers={"Location": "http://127.0.0.2:9/steal"}))
    exporter = exporter_for(emulator)
    exporter.export(make_records(2))
    stats = settle(exporter)
    assert stats.dropped == {"http_307": 2}
    assert len(emulator.requests) == 1
    exporter.shutdown()


def test_wrong_scope_names_the_needed_scope_and_never_the_token(emulator, make_records, caplog):
    """A 403 logs one line naming logs.ingest; the token appears nowhere."""
    token = emulator.mint_token(scopes=("events.ingest",))
    exporter = exporter_for(emulator, token=token)
    with caplog.at_level(logging.DEBUG):
        exporter.export(make_records(2))
        exporter.export(make_records(2))
        stats = settle(exporter)
    assert stats.dropped == {"http_403": 4}
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "logs.ingest" in errors[0]
    assert token not in caplog.text and token.split(".")[2] not in caplog.text
    exporter.shutdown()


def test_canary_token_never_leaks(make_records, caplog, capsys):
    """The token is absent from reprs, logs and errors on auth, refused-connection paths."""
    with DynatraceEmulator() as dt:
        url = dt.url
        exporter = DynatraceLogExporter(endpoint=url, token=CANARY, **FAST)
        with caplog.at_level(logging.DEBUG):
            exporter.export(make_records(1))  # unknown token: 401
            settle(exporter)
    with caplog.at_level(logging.DEBUG):
        exporter.export(make_records(1))  # server gone: connection refused, retried
        exporter.shutdown(timeout_millis=300)
    captured = capsys.readouterr()
    texts = [caplog.text, captured.out, captured.err, repr(exporter), repr(exporter.config),
             str(exporter.config), repr(exporter.stats())]
    assert exporter.stats().dropped.get("http_401") == 1
    assert all(CANARY not in text and CANARY[7:31] + "." + "S" * 64 not in text
               for text in texts)


def test_stale_records_are_filtered_before_sending(emulator, make_records):
    """Records older than Dynatrace's 24 h window are counted too_old; the rest arrive."""
    exporter = exporter_for(emulator)
    old = make_records(3, timestamp_ns=time.time_ns() - 25 * 3600 * 10**9)
    fresh = make_records(5)
    exporter.export(old + fresh)
    stats = settle(exporter)
    assert stats.dropped == {"too_old": 3} and stats.delivered == 5
    assert all(r.status == 204 for r in emulator.requests)
    exporter.shutdown()


def test_shutdown_interrupts_backoff_within_its_deadline(emulator, make_records):
    """With the server down, shutdown(300 ms) returns promptly and counts what it abandons."""
    emulator.enqueue("logs", *[Reply(503) for _ in range(1000)])
    exporter = exporter_for(emulator, backoff_initial_s=5.0, backoff_max_s=5.0)
    exporter.export(make_records(10))
    time.sleep(0.2)  # let the first attempt fail and the backoff begin
    started = time.monotonic()
    exporter.shutdown(timeout_millis=300)
    assert time.monotonic() - started < 2.0
    stats = exporter.stats()
    assert stats.dropped == {"shutdown": 10} and stats.balanced


def test_export_after_shutdown_is_counted(emulator, make_records):
    """Records exported after shutdown are counted as already_shutdown, never sent."""
    exporter = exporter_for(emulator)
    exporter.shutdown()
    exporter.export(make_records(3))
    assert exporter.stats().dropped == {"already_shutdown": 3}
    assert emulator.requests == []


def test_own_log_lines_are_not_shipped_back(emulator, make_records):
    """Records from dt_exporter's own loggers are dropped as self_log (no feedback loop)."""
    exporter = exporter_for(emulator)
    exporter.export(make_records(2, scope="dt_exporter.delivery") + make_records(1))
    stats = settle(exporter)
    assert stats.dropped == {"self_log": 2} and stats.delivered == 1
    exporter.shutdown()


def test_oneagent_endpoint_gets_no_token_and_no_compression(emulator, make_records):
    """The OneAgent local API is sent plain JSON without Authorization or Content-Encoding."""
    exporter = DynatraceLogExporter(endpoint=f"{emulator.url}/v2/logs/ingest", **FAST)
    exporter.export(make_records(3))
    stats = settle(exporter)
    assert stats.delivered == 3
    request = emulator.requests[0]
    assert request.path == "/v2/logs/ingest"
    assert "content-encoding" not in request.headers
    assert "authorization" not in request.headers
    exporter.shutdown()


def test_bad_environment_degrades_to_a_counting_no_op(monkeypatch, make_records, caplog):
    """Constructed with no arguments and bad env, the exporter logs once and drops by count."""
    monkeypatch.setenv("DT_ENDPOINT", "https://abc123.live.dynatrace.com")  # no token
    with caplog.at_level(logging.ERROR):
        exporter = DynatraceLogExporter()
    exporter.export(make_records(4))
    assert exporter.stats().dropped == {"misconfigured": 4}
    assert "DT_API_TOKEN" in caplog.text
