"""Events API v2 and custom security events against the emulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from _support import FAST, settle
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from dt_exporter import DynatraceLogExporter
from dt_exporter.errors import ConfigError
from dt_exporter.event_model import Event, EventType
from dt_exporter.event_routing import EventRoutingExporter
from dt_exporter.events import EventsClient, SecurityEventsClient
from dt_exporter.testing import DynatraceEmulator, Reply

DEPLOYMENT = Event(EventType.CUSTOM_DEPLOYMENT, "Deployed 1.4.2",
                   entity_selector="type(SERVICE),entityName.equals(checkout)",
                   properties={"dt.event.deployment.version": "1.4.2", "ci.run": 812,
                               "canary": True})
OTHER_TOKEN = "dt0c01.AAAAAAAAAAAAAAAAAAAAAAAA." + "B" * 64


def events_client(dt: DynatraceEmulator, **settings: Any) -> EventsClient:
    merged: dict[str, Any] = {"endpoint": dt.url, "token": dt.token, **FAST}
    merged.update(settings)
    return EventsClient(**merged)


def security_client(dt: DynatraceEmulator, name: str = "my-scanner",
                    **settings: Any) -> SecurityEventsClient:
    merged: dict[str, Any] = {"endpoint": dt.url, "token": dt.token, **FAST}
    merged.update(settings)
    return SecurityEventsClient(name, **merged)



# -- Events API v2 -----------------------------------------------------------------------------


def test_an_event_is_delivered_with_its_properties(dynatrace):
    """send_now delivers one event; Dynatrace holds it with every property, as strings."""
    client = events_client(dynatrace)
    result = client.send_now(DEPLOYMENT, timeout_s=5)
    assert result.delivered and result.http_status == 201
    assert len(result.correlation_ids) == 1 and result.correlation_ids[0]
    [stored] = dynatrace.events
    assert stored == {
        "eventType": "CUSTOM_DEPLOYMENT", "title": "Deployed 1.4.2",
        "entitySelector": "type(SERVICE),entityName.equals(checkout)",
        "properties": {"dt.event.deployment.version": "1.4.2", "ci.run": "812",
                       "canary": "true"},
    }
    [request] = dynatrace.requests
    assert request.path == "/api/v2/events/ingest"
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.headers["Authorization"].startswith("Api-Token ")
    assert "Content-Encoding" not in request.headers  # events default to no compression
    stats = settle(client)
    assert (stats.received, stats.delivered, stats.requests) == (1, 1, 1)
    client.shutdown()


def test_many_events_go_one_request_each(dynatrace):
    """send() queues at once; 25 events become 25 requests, all delivered, none lost."""
    client = events_client(dynatrace)
    receipt = client.send([Event(EventType.CUSTOM_INFO, f"event {i}") for i in range(25)])
    assert receipt.queued == 25 and receipt.ok
    stats = settle(client)
    assert stats.delivered == 25 and stats.requests == 25
    assert sorted(e["title"] for e in dynatrace.events) == sorted(f"event {i}" for i in range(25))
    client.shutdown()


def test_503_then_201_is_retried(dynatrace):
    """A 503 is retried with backoff and the event arrives once."""
    dynatrace.enqueue("events", Reply(503))
    client = events_client(dynatrace)
    result = client.send_now(DEPLOYMENT, timeout_s=5)
    assert result.delivered
    assert [r.status for r in dynatrace.requests] == [503, 201]
    assert len(dynatrace.events) == 1
    stats = settle(client)
    assert stats.retries == 1 and stats.delivered == 1
    client.shutdown()


def test_401_is_not_retried(dynatrace):
    """An unknown token gets one request, a rejected result and an http_401 drop."""
    client = events_client(dynatrace, token=OTHER_TOKEN)
    result = client.send_now(DEPLOYMENT, timeout_s=5)
    assert result.outcome == "rejected" and result.http_status == 401
    assert OTHER_TOKEN not in result.reason and "B" * 64 not in result.reason
    time.sleep(0.1)  # would a retry happen, it would happen now
    assert len(dynatrace.requests) == 1
    assert settle(client).dropped == {"http_401": 1}
    client.shutdown()


def test_403_names_the_missing_scope(dynatrace):
    """A token without events.ingest gets 403, and the reason names the scope."""
    token = dynatrace.mint_token(scopes=("logs.ingest",))
    client = events_client(dynatrace, token=token)
    result = client.send_now(DEPLOYMENT, timeout_s=5)
    assert result.outcome == "rejected" and result.http_status == 403
    assert "events.ingest" in result.reason
    assert len(dynatrace.requests) == 1 and dynatrace.events == []
    assert settle(client).dropped == {"http_403": 1}
    client.shutdown()


def test_a_non_ok_status_inside_201_is_counted_as_rejected(dynatrace):
    """201 with INVALID_METADATA for the event: rejected_by_server, not delivered."""
    dynatrace.enqueue("events", Reply(201, partial_rejected=[0]))
    client = events_client(dynatrace)
    client.send(DEPLOYMENT)
    stats = settle(client)
    assert stats.delivered == 0 and stats.dropped == {"rejected_by_server": 1}
    assert stats.partial_successes == 1 and dynatrace.events == []
    client.shutdown()


def test_send_now_reports_the_per_event_status(dynatrace):
    """send_now says which status Dynatrace gave the event, with its correlation id."""
    dynatrace.enqueue("events", Reply(201, partial_rejected=[0]))
    client = events_client(dynatrace)
    result = client.send_now(DEPLOYMENT, timeout_s=5)
    assert result.outcome == "rejected" and "INVALID_METADATA" in result.reason
    assert len(result.correlation_ids) == 1
    client.shutdown()


def test_time_windows_are_left_to_dynatrace(dynatrace):
    """An error event 7 h old is sent; Dynatrace's INVALID_TIMESTAMPS counts as rejected."""
    old = Event(EventType.ERROR_EVENT, "disk full",
                start_time_ms=int(time.time() * 1000) - 7 * 3600 * 1000)
    client = events_client(dynatrace)
    result = client.send_now(old, timeout_s=5)
    assert result.outcome == "rejected" and "INVALID_TIMESTAMPS" in result.reason
    assert settle(client).dropped == {"rejected_by_server": 1}
    client.shutdown()


def test_invalid_events_are_refused_before_sending(dynatrace):
    """No title: refused with a reason, counted as invalid_event, no request made."""
    client = events_client(dynatrace)
    receipt = client.send([Event(EventType.CUSTOM_INFO, ""), DEPLOYMENT])
    assert receipt.queued == 1 and receipt.dropped == {"invalid_event": 1}
    assert "title is required" in receipt.problems[0]
    result = client.send_now(Event(EventType.CUSTOM_INFO, " "), timeout_s=5)
    assert result.outcome == "rejected" and result.reason == "title is required"
    stats = settle(client)
    assert stats.dropped == {"invalid_event": 2} and stats.delivered == 1
    assert len(dynatrace.requests) == 1
    client.shutdown()


def test_oversized_values_are_cut_and_the_event_still_goes(dynatrace):
    """A 10,000-character property arrives cut to 4,096 with the marker; counted as truncated."""
    client = events_client(dynatrace)
    result = client.send_now(Event(EventType.CUSTOM_INFO, "big", properties={"log": "x" * 10_000}),
                             timeout_s=5)
    assert result.delivered and result.truncated == {"value": 1}
    value = dynatrace.events[0]["properties"]["log"]
    assert len(value) == 4096 and value.endswith("[TRUNCATED]")
    assert settle(client).truncated == {"value": 1}
    client.shutdown()


def test_oneagent_local_path_needs_no_token(dynatrace):
    """Pointed at OneAgent's /v2/events/ingest: no Authorization, no Content-Encoding."""
    client = EventsClient(endpoint=f"{dynatrace.url}/v2/events/ingest", **FAST)
    assert client.config.endpoint.is_oneagent and client.config.token is None
    result = client.send_now(DEPLOYMENT, timeout_s=5)
    assert result.delivered
    [request] = dynatrace.requests
    assert request.path == "/v2/events/ingest"
    assert "Authorization" not in request.headers and "Content-Encoding" not in request.headers
    assert dynatrace.events[0]["title"] == "Deployed 1.4.2"
    client.shutdown()


def test_gzip_for_events_only_when_asked(dynatrace):
    """DT_EXPORTER_COMPRESSION's gzip default does not apply; events_compression=gzip does."""
    plain = events_client(dynatrace, compression="gzip")
    assert plain.send_now(DEPLOYMENT, timeout_s=5).delivered
    zipped = events_client(dynatrace, events_compression="gzip")
    assert zipped.send_now(DEPLOYMENT, timeout_s=5).delivered
    first, second = dynatrace.requests
    assert "Content-Encoding" not in first.headers
    assert second.headers["Content-Encoding"] == "gzip"
    assert len(dynatrace.events) == 2
    plain.shutdown()
    zipped.shutdown()


def test_gzip_with_oneagent_is_a_config_error(dynatrace):
    """OneAgent refuses Content-Encoding, so asking for gzip there is refused up front."""
    with pytest.raises(ConfigError, match="DT_EXPORTER_EVENTS_COMPRESSION"):
        EventsClient(endpoint=f"{dynatrace.url}/v2/events/ingest", events_compression="gzip")


def test_undelivered_in_time_is_reported_and_counted_at_shutdown(dynatrace):
    """Endless 503s: send_now gives up waiting, and shutdown counts the event as lost."""
    dynatrace.enqueue("events", *[Reply(503)] * 200)
    client = events_client(dynatrace)
    result = client.send_now(DEPLOYMENT, timeout_s=0.5)
    assert result.outcome == "undelivered" and "503" in result.reason
    assert client.shutdown(0.2) is False
    stats = client.stats()
    assert stats.balanced and stats.dropped == {"shutdown": 1}


def test_sending_after_shutdown_is_refused_and_counted(dynatrace):
    """After shutdown, send() queues nothing and says why."""
    client = events_client(dynatrace)
    client.shutdown()
    receipt = client.send(DEPLOYMENT)
    assert receipt.queued == 0 and receipt.dropped == {"already_shutdown": 1}
    stats = client.stats()
    assert stats.balanced and stats.dropped == {"already_shutdown": 1}


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_forked_child_sends_its_own_events_only(dynatrace):
    """After fork the child starts with its own queue and books; each event arrives once."""
    dynatrace.enqueue("events", Reply(503))
    client = events_client(dynatrace, backoff_initial_s=0.5, backoff_max_s=0.5)
    client.send(Event(EventType.CUSTOM_INFO, "parent"))
    time.sleep(0.2)  # the parent's event has met the 503 and waits in backoff
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            result = client.send_now(Event(EventType.CUSTOM_INFO, "child"), timeout_s=5)
            stats = client.stats()
            code = 0 if result.delivered and (stats.received, stats.delivered) == (1, 1) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    stats = settle(client)
    assert (stats.received, stats.delivered) == (1, 1)
    assert sorted(e["title"] for e in dynatrace.events) == ["child", "parent"]
    client.shutdown()


# -- custom security events ----------------------------------------------------------------------


def test_security_events_are_batched_and_202_is_delivered(dynatrace):
    """Three objects go in one gzipped JSON array to the new path and are accepted."""
    dynatrace.security_endpoints = {"my-scanner"}
    client = security_client(dynatrace)
    receipt = client.send([{"finding.id": i, "severity": "HIGH"} for i in range(3)])
    assert receipt.queued == 3
    stats = settle(client)
    assert stats.delivered == 3 and stats.requests == 1
    [request] = dynatrace.requests
    assert request.path == "/platform/ingest/custom/security.events/my-scanner"
    assert request.status == 202 and request.headers["Content-Encoding"] == "gzip"
    assert [e["finding.id"] for e in dynatrace.security_events] == [0, 1, 2]
    assert {(e["_endpoint"], e["_legacy"]) for e in dynatrace.security_events} == {
        ("my-scanner", False)}
    client.shutdown()


def test_security_falls_back_to_the_legacy_path_once_and_stays(dynatrace, caplog):
    """New path 404 -> legacy path, logged once; later bodies go straight to legacy."""
    dynatrace.new_security_path_enabled = False
    client = security_client(dynatrace)
    with caplog.at_level(logging.WARNING, logger="dt_exporter"):
        first = client.send_now({"finding.id": 1}, timeout_s=5)
        client.send({"finding.id": 2})
        settle(client)
    assert first.delivered and first.http_status == 202
    assert [(r.path.rsplit("/", 2)[-2], r.status) for r in dynatrace.requests] == [
        ("security.events", 404), ("events.security", 202), ("events.security", 202)]
    assert all(e["_legacy"] for e in dynatrace.security_events)
    assert sum("legacy path" in r.getMessage() for r in caplog.records) == 1
    client.shutdown()


def test_an_unknown_security_endpoint_is_dropped_after_both_paths(dynatrace):
    """404 on the new and the legacy path: rejected, counted as http_404, not retried."""
    dynatrace.security_endpoints = {"another-scanner"}
    client = security_client(dynatrace)
    result = client.send_now({"finding.id": 1}, timeout_s=5)
    assert result.outcome == "rejected" and result.http_status == 404
    assert [r.status for r in dynatrace.requests] == [404, 404]
    assert settle(client).dropped == {"http_404": 1}
    client.shutdown()


def test_security_needs_its_scope(dynatrace):
    """A token with only events.ingest gets 403 naming openpipeline.events_security.custom."""
    client = security_client(dynatrace, token=dynatrace.mint_token(scopes=("events.ingest",)))
    result = client.send_now({"finding.id": 1}, timeout_s=5)
    assert result.outcome == "rejected" and result.http_status == 403
    assert "openpipeline.events_security.custom" in result.reason
    client.shutdown()


def test_security_on_oneagent_is_a_config_error(dynatrace):
    """OneAgent's local API has no security events: refused with a clear ConfigError."""
    with pytest.raises(ConfigError, match="no security-events API"):
        SecurityEventsClient("my-scanner", endpoint=f"{dynatrace.url}/v2/events/ingest")


def test_security_objects_that_are_not_json_are_made_json(dynatrace):
    """Datetimes, sets and bytes are converted; a non-mapping item is refused by name."""
    import datetime as dt

    client = security_client(dynatrace)
    receipt = client.send([{"at": dt.datetime(2026, 5, 1, 12, 0), "tags": {"b", "a"},
                            "raw": b"\x00"}, ["not", "an", "object"]])  # type: ignore[list-item]
    assert receipt.queued == 1 and receipt.dropped == {"invalid_event": 1}
    settle(client)
    [stored] = dynatrace.security_events
    assert stored["at"] == "2026-05-01T12:00:00" and stored["tags"] == ["a", "b"]
    assert stored["raw"] == "AA=="
    client.shutdown()


# -- the OpenTelemetry route ---------------------------------------------------------------------


def test_otel_event_records_take_their_routes_and_logs_stay_logs(dynatrace):
    """deployment -> Events API, finding.* -> security endpoint, everything else -> log ingest."""
    logs = DynatraceLogExporter(endpoint=dynatrace.url, token=dynatrace.token, **FAST)
    exporter = EventRoutingExporter(
        logs, "deployment=events:CUSTOM_DEPLOYMENT,finding.*=security:my-scanner")
    provider = LoggerProvider(resource=Resource.create({"service.name": "checkout"}),
                              shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("ci.pipeline")
    logger.emit(event_name="deployment", body="rolled out",
                attributes={"event.title": "Deployed 1.4.2", "version": "1.4.2",
                            "build": {"id": 7}})
    logger.emit(event_name="finding.cve", body="CVE-2026-1", attributes={"score": 9.8})
    logger.emit(body="a plain log line", attributes={"order.id": 42})
    logger.emit(event_name="cache.miss", body="not routed")
    assert exporter.force_flush(10_000)

    [event] = dynatrace.events
    assert event["eventType"] == "CUSTOM_DEPLOYMENT" and event["title"] == "Deployed 1.4.2"
    assert event["properties"]["version"] == "1.4.2"
    assert event["properties"]["build.id"] == "7"
    assert event["properties"]["event.name"] == "deployment"
    assert event["properties"]["content"] == "rolled out"
    assert event["properties"]["service.name"] == "checkout"
    [finding] = dynatrace.security_events
    assert finding["event.name"] == "finding.cve" and finding["score"] == 9.8
    assert finding["content"] == "CVE-2026-1" and finding["_endpoint"] == "my-scanner"
    assert sorted(r.content for r in dynatrace.records) == ["a plain log line", "not routed"]
    unrouted = next(r for r in dynatrace.records if r.content == "not routed")
    assert unrouted.attributes["event.name"] == "cache.miss"

    stats = exporter.stats()
    assert set(stats) == {"logs", "events", "security:my-scanner"}
    assert [(s.received, s.delivered) for s in stats.values()] == [(2, 2), (1, 1), (1, 1)]
    assert all(s.balanced for s in stats.values())
    provider.shutdown()


def test_routes_come_from_the_environment(dynatrace, monkeypatch):
    """DT_EXPORTER_EVENT_ROUTES configures the routing exporter."""
    monkeypatch.setenv("DT_EXPORTER_EVENT_ROUTES", "release.*=events:CUSTOM_ANNOTATION")
    logs = DynatraceLogExporter(endpoint=dynatrace.url, token=dynatrace.token, **FAST)
    exporter = EventRoutingExporter(logs)
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    provider.get_logger("app").emit(event_name="release.tagged", attributes={"tag": "v2"})
    assert exporter.force_flush(10_000)
    [event] = dynatrace.events
    assert event["eventType"] == "CUSTOM_ANNOTATION" and event["title"] == "release.tagged"
    assert dynatrace.records == []
    provider.shutdown()


def test_without_routes_every_record_stays_a_log(dynatrace):
    """No rules: the routing exporter is a pass-through and creates no event clients."""
    logs = DynatraceLogExporter(endpoint=dynatrace.url, token=dynatrace.token, **FAST)
    exporter = EventRoutingExporter(logs)
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    provider.get_logger("app").emit(event_name="deployment", body="stays a log")
    assert exporter.force_flush(10_000)
    assert [r.content for r in dynatrace.records] == ["stays a log"]
    assert dynatrace.events == [] and set(exporter.stats()) == {"logs"}
    provider.shutdown()


# -- the CLI ---------------------------------------------------------------------------------------


def run_cli(dt: DynatraceEmulator, *args: str, token: str | None = None,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DT_", "OTEL_"))}
    env.update({"DT_ENDPOINT": dt.url, "DT_API_TOKEN": token or dt.token,
                "DT_EXPORTER_BACKOFF_INITIAL": "0.01", "DT_EXPORTER_BACKOFF_MAX": "0.05"})
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "dt_exporter", "event", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_cli_sends_a_deployment_marker(dynatrace):
    """Exit 0, one line naming the event and its correlation id, and the event arrives."""
    done = run_cli(dynatrace, "--type", "CUSTOM_DEPLOYMENT", "--title", "Deployed 1.4.2",
                   "--property", "dt.event.deployment.version=1.4.2", "--property", "ci=yes",
                   "--entity-selector", "type(SERVICE)", "--timeout", "30")
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert line.startswith('delivered CUSTOM_DEPLOYMENT "Deployed 1.4.2"')
    assert "correlation id" in line
    assert dynatrace.token not in done.stdout + done.stderr
    [event] = dynatrace.events
    assert event == {"eventType": "CUSTOM_DEPLOYMENT", "title": "Deployed 1.4.2", "timeout": 30,
                     "entitySelector": "type(SERVICE)",
                     "properties": {"dt.event.deployment.version": "1.4.2", "ci": "yes"}}


def test_cli_exits_3_when_dynatrace_answers_400(dynatrace):
    """A 400 is a permanent refusal: exit 3, one line on stderr, no token in it."""
    dynatrace.enqueue("events", Reply(400))
    done = run_cli(dynatrace, "--type", "CUSTOM_INFO", "--title", "x")
    assert done.returncode == 3
    assert done.stdout == "" and done.stderr.startswith("rejected:") and "HTTP 400" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert dynatrace.token not in done.stderr
    assert dynatrace.events == []


def test_cli_exits_2_on_a_config_error(dynatrace):
    """No token for a non-OneAgent endpoint: exit 2 naming DT_API_TOKEN, nothing sent."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DT_", "OTEL_"))}
    env["DT_ENDPOINT"] = dynatrace.url
    done = subprocess.run([sys.executable, "-m", "dt_exporter", "event", "--type", "CUSTOM_INFO",
                           "--title", "x"], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2 and "DT_API_TOKEN" in done.stderr
    assert dynatrace.requests == []


def test_cli_exits_4_when_it_cannot_deliver_in_time(dynatrace):
    """Nothing but 503s within --wait: exit 4."""
    dynatrace.enqueue("events", *[Reply(503)] * 500)
    done = run_cli(dynatrace, "--type", "CUSTOM_INFO", "--title", "x", "--wait", "0.5")
    assert done.returncode == 4 and done.stderr.startswith("not delivered:"), done.stderr


def test_cli_sends_a_security_event(dynatrace):
    """--security with --json: exit 0 and the object arrives with the extra property."""
    done = run_cli(dynatrace, "--security", "my-scanner", "--json",
                   '{"event.type": "VULNERABILITY_FINDING", "finding.score": 9.8}',
                   "--property", "scanner=trivy")
    assert done.returncode == 0, done.stderr
    [stored] = dynatrace.security_events
    assert stored["event.type"] == "VULNERABILITY_FINDING" and stored["finding.score"] == 9.8
    assert stored["scanner"] == "trivy"


@pytest.mark.parametrize(
    "args",
    [
        ("--type", "CUSTOM_INFO"),
        ("--security", "my-scanner", "--json", "[1, 2]"),
        ("--security", "my-scanner", "--json", "{", ),
        ("--security", "my-scanner", "--title", "x", "--json", "{}"),
        ("--type", "CUSTOM_INFO", "--title", "x", "--property", "novalue"),
        ("--type", "NOT_A_TYPE", "--title", "x"),
    ],
    ids=["no-title", "json-array", "bad-json", "title-with-security", "bad-property", "bad-type"],
)
def test_cli_usage_errors_exit_2(dynatrace, args):
    """Malformed invocations exit 2 and send nothing."""
    done = run_cli(dynatrace, *args)
    assert done.returncode == 2, done.stderr
    assert dynatrace.requests == []
