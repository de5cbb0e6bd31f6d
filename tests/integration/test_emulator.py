"""The Dynatrace emulator over real HTTP: what each endpoint accepts, refuses, and how it fails."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

import dt_exporter.testing
from dt_exporter.testing import DynatraceEmulator, ReceivedRecord, Reply

FLUENT_BIT = Path(__file__).resolve().parents[1] / "fixtures" / "fluent-bit-5.1.1"
JSON = "application/json; charset=utf-8"
PROTOBUF = "application/x-protobuf"
LOGS = "/api/v2/logs/ingest"
OTLP = "/api/v2/otlp/v1/logs"
EVENTS = "/api/v2/events/ingest"
SECURITY = "/platform/ingest/custom/security.events/scanner"
LEGACY_SECURITY = "/platform/ingest/custom/events.security/scanner"
HOUR_MS = 3600 * 1000


@pytest.fixture
def http() -> Iterator[urllib3.PoolManager]:
    pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2.0, read=5.0))
    yield pool
    pool.clear()


def now_ms() -> int:
    return int(time.time() * 1000)


def post(
    http: urllib3.PoolManager,
    dt: DynatraceEmulator,
    path: str,
    body: Any,
    *,
    content_type: str | None = JSON,
    auth: str | None = "token",
    headers: dict[str, str] | None = None,
    compress: bool = False,
    timeout: float | None = None,
) -> urllib3.BaseHTTPResponse:
    """POST `body` (bytes, text, or JSON-able) with the emulator's own token by default."""
    if isinstance(body, str):
        data = body.encode()
    elif isinstance(body, bytes):
        data = body
    else:
        data = json.dumps(body).encode()
    sent: dict[str, str] = {}
    if content_type is not None:
        sent["Content-Type"] = content_type
    if auth == "token":
        sent["Authorization"] = f"Api-Token {dt.token}"
    elif auth is not None:
        sent["Authorization"] = auth
    if compress:
        data = gzip.compress(data)
        sent["Content-Encoding"] = "gzip"
    sent.update(headers or {})
    read_timeout = urllib3.Timeout(connect=2.0, read=5.0 if timeout is None else timeout)
    return http.request("POST", dt.url + path, body=data, headers=sent, timeout=read_timeout)


def error_of(response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
    """The `error` object of an ErrorEnvelope, checking the envelope's shape."""
    document = json.loads(response.data)
    assert set(document) == {"error"}
    assert document["error"]["code"] == response.status
    assert isinstance(document["error"]["message"], str)
    return dict(document["error"])


def success_message(response: urllib3.BaseHTTPResponse) -> str:
    """The message of a 200 SuccessEnvelope."""
    assert response.status == 200
    document = json.loads(response.data)
    assert set(document) == {"details"}
    assert document["details"]["code"] == 200
    return str(document["details"]["message"])


def any_value(value: Any) -> AnyValue:
    if isinstance(value, dict):
        values = [KeyValue(key=k, value=any_value(v)) for k, v in value.items()]
        return AnyValue(kvlist_value=KeyValueList(values=values))
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    return AnyValue(string_value=value)


def attrs(values: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in values.items()]


def otlp_body(*records: LogRecord, resource: dict[str, Any] | None = None) -> bytes:
    request = ExportLogsServiceRequest()
    resource_logs = ResourceLogs(scope_logs=[ScopeLogs(log_records=list(records))])
    resource_logs.resource.attributes.extend(attrs(resource or {}))
    request.resource_logs.append(resource_logs)
    return bytes(request.SerializeToString())


def otlp_record(body: str = "hello", **fields: Any) -> LogRecord:
    return LogRecord(time_unix_nano=now_ms() * 1_000_000, body=any_value(body), **fields)


#: endpoint group -> (path, content type, a valid body, the status that accepts it)
VALID: dict[str, tuple[str, str, Callable[[], Any], int]] = {
    "logs": (LOGS, JSON, lambda: [{"content": "hello"}], 204),
    "otlp": (OTLP, PROTOBUF, lambda: otlp_body(otlp_record()), 200),
    "events": (EVENTS, JSON, lambda: {"eventType": "CUSTOM_INFO", "title": "deployed"}, 201),
    "security": (SECURITY, JSON, lambda: [{"finding": "x"}], 202),
}


# -- the public surface ----------------------------------------------------------------------


def test_public_names_are_sorted_and_complete() -> None:
    """`dt_exporter.testing` exports exactly its four public names, sorted."""
    names = dt_exporter.testing.__all__
    assert (
        names
        == sorted(names)
        == ["DynatraceEmulator", "ReceivedRecord", "ReceivedRequest", "Reply"]
    )


def test_fixture_yields_a_running_emulator_with_a_valid_token(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """The `dynatrace` fixture is started on 127.0.0.1 and its token has Dynatrace's format."""
    assert dynatrace.url.startswith("http://127.0.0.1:") and dynatrace.port > 0
    prefix, public, secret = dynatrace.token.split(".")
    assert (prefix, len(public), len(secret)) == ("dt0c01", 24, 64)
    assert post(http, dynatrace, LOGS, {"content": "x"}).status == 204


# -- JSON log ingest --------------------------------------------------------------------------


def test_json_array_is_stored_in_order(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """A JSON array gives one record per object, answered 204 with no body."""
    response = post(http, dynatrace, LOGS, [{"content": "a"}, {"message": "b", "level": "warn"}])
    assert (response.status, response.data) == (204, b"")
    first, second = dynatrace.records
    assert (first.content, second.content, second.loglevel) == ("a", "b", "WARN")
    assert first.endpoint == "logs"


def test_json_object_is_one_record(dynatrace: DynatraceEmulator, http: urllib3.PoolManager) -> None:
    """A single JSON object is one record; `raw` keeps the parsed input."""
    assert post(http, dynatrace, LOGS, {"log": "x", "k": [1, 2]}).status == 204
    [record] = dynatrace.records
    assert record.raw == {"log": "x", "k": [1, 2]}
    assert record.attributes == {"k": [1, 2]}


def test_text_plain_body_is_the_content(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """A `text/plain` body is one event whose content is the whole body."""
    body = '{"message": "not parsed"}\nsecond line'
    assert post(http, dynatrace, LOGS, body, content_type="text/plain; charset=utf-8").status == 204
    [record] = dynatrace.records
    assert (record.content, record.content_key, record.attributes) == (body, None, {})


@pytest.mark.parametrize(
    "content_type",
    [
        "application/jsonl",
        "application/jsonlines",
        "application/jsonlines+json",
        "application/x-ndjson",
        "application/x-jsonlines; charset=utf-8",
    ],
)
def test_json_lines_types(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager, content_type: str
) -> None:
    """Every documented JSON Lines type takes one object per line; blank lines are skipped."""
    body = '{"content": "one"}\r\n\n{"content": "two"}\n'
    assert post(http, dynatrace, LOGS, body, content_type=content_type).status == 204
    assert [r.content for r in dynatrace.records] == ["one", "two"]


def test_json_lines_bad_line_is_a_partial_success(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """A JSON Lines line that is not an object is rejected alone, with a 200 naming its index."""
    body = '{"content": "one"}\n{broken\n"a string"\n{"content": "four"}\n'
    response = post(http, dynatrace, LOGS, body, content_type="application/x-ndjson")
    assert success_message(response) == (
        "Only a part of input events were ingested due to event invalidity. "
        "Rejected event indexes: [1, 2]"
    )
    assert [r.content for r in dynatrace.records] == ["one", "four"]


def test_array_element_that_is_not_an_object_is_rejected(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """A JSON array element that is not an object is rejected, the others stored."""
    response = post(http, dynatrace, LOGS, [{"content": "a"}, "b", 3])
    assert success_message(response).endswith("Rejected event indexes: [1, 2]")
    assert [r.content for r in dynatrace.records] == ["a"]


def test_charset_parameter_is_honoured(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """A declared non-UTF-8 charset is decoded as such."""
    body = '{"content": "café"}'.encode("iso-8859-1")
    ctype = "application/json; charset=ISO-8859-1"
    assert post(http, dynatrace, LOGS, body, content_type=ctype).status == 204
    assert dynatrace.records[0].content == "café"


@pytest.mark.parametrize("name", ["content-type", "Content-Type", "CONTENT-TYPE"])
def test_content_type_query_parameter_overrides_header(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager, name: str
) -> None:
    """`?content-type=` (any case) wins over the header and is not an attribute."""
    path = f"{LOGS}?{name}=application/json"
    assert post(http, dynatrace, path, {"content": "x"}, content_type="text/plain").status == 204
    [record] = dynatrace.records
    assert (record.content, record.attributes) == ("x", {})


@pytest.mark.parametrize("content_type", [None, "application/xml", "application/x-protobuf"])
def test_unsupported_content_type_is_400(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager, content_type: str | None
) -> None:
    """A body in a type the logs API does not read is refused with an ErrorEnvelope."""
    response = post(http, dynatrace, LOGS, {"content": "x"}, content_type=content_type)
    assert response.status == 400
    assert "Unsupported content type" in error_of(response)["message"]
    assert dynatrace.records == []


@pytest.mark.parametrize("body", ['{"content": ', "", "42", '"text"', "[1, 2] trailing"])
def test_malformed_json_is_400(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager, body: str
) -> None:
    """A JSON body that does not parse (or is not an object/array) is a 400."""
    response = post(http, dynatrace, LOGS, body)
    assert response.status == 400
    error_of(response)


def test_structure_and_attributes_from_query_and_headers(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """`structure` and `X-Dynatrace-Attr`/query attributes apply with documented precedence."""
    headers = {"X-Dynatrace-Options": "structure=raw", "X-Dynatrace-Attr": "team=header&region=eu"}
    body = {"content": "x", "team": "body", "obj": {"a": 1}}
    assert (
        post(http, dynatrace, f"{LOGS}?team=query&tag=1&tag=2", body, headers=headers).status == 204
    )
    [record] = dynatrace.records
    assert record.attributes == {
        "team": "query",
        "overwritten1.team": "body",
        "obj": '{"a":1}',
        "region": "eu",
        "tag": ["1", "2"],
    }
    assert dynatrace.requests[0].query == {"team": "query", "tag": "2"}


def test_structure_query_beats_header(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """`?structure=flattened` wins over `X-Dynatrace-Options: structure=raw`."""
    headers = {"X-Dynatrace-Options": "structure=raw"}
    path = f"{LOGS}?structure=flattened"
    assert (
        post(http, dynatrace, path, {"content": "x", "o": {"a": 1}}, headers=headers).status == 204
    )
    assert dynatrace.records[0].attributes == {"o.a": 1}


def test_gzip_body_is_accepted_and_recorded_decoded(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """`Content-Encoding: gzip` is read; `requests` holds the body after gunzip."""
    assert post(http, dynatrace, LOGS, [{"content": "zipped"}], compress=True).status == 204
    assert dynatrace.records[0].content == "zipped"
    assert json.loads(dynatrace.requests[0].body) == [{"content": "zipped"}]


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_unreadable_content_encoding_is_400(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager, encoding: str
) -> None:
    """A body that is not valid gzip, or another coding, is a 400."""
    headers = {"Content-Encoding": encoding}
    response = post(http, dynatrace, LOGS, b"not compressed", headers=headers)
    assert response.status == 400
    error_of(response)


def test_too_deep_nesting_is_cut_with_a_partial_success(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """Flattened nesting beyond 5 levels is removed; 200 names the record, which is stored."""
    deep = {"content": "d", "a": {"b": {"c": {"d": {"e": {"f": 1}}}}}, "k": 1}
    response = post(http, dynatrace, LOGS, [{"content": "ok"}, deep])
    assert success_message(response) == (
        "Event(s) have attributes that are too nested for records: [1]"
    )
    assert dynatrace.records[1].attributes == {"k": 1}


# -- limits ----------------------------------------------------------------------------------


def test_body_over_the_size_limit_is_413(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """A body larger than `max_request_bytes` is a 413 and nothing is stored."""
    dynatrace.max_request_bytes = 1000
    response = post(http, dynatrace, LOGS, [{"content": "x" * 1000}])
    assert response.status == 413
    error_of(response)
    assert dynatrace.records == []
    assert post(http, dynatrace, LOGS, [{"content": "x" * 100}]).status == 204


def test_size_limit_applies_after_gunzip(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """A small gzip body that inflates past the limit is a 413."""
    dynatrace.max_request_bytes = 10_000
    body = json.dumps([{"content": "a" * 50_000}]).encode()
    assert len(gzip.compress(body)) < 1000
    assert post(http, dynatrace, LOGS, body, compress=True).status == 413


@pytest.mark.parametrize(("content_type", "separator"), [(JSON, None), ("application/jsonl", "\n")])
def test_too_many_records_is_413(
    dynatrace: DynatraceEmulator,
    http: urllib3.PoolManager,
    content_type: str,
    separator: str | None,
) -> None:
    """More records than `max_records_per_request` is a 413."""
    dynatrace.max_records_per_request = 3
    items = [{"content": str(i)} for i in range(4)]
    body = separator.join(json.dumps(i) for i in items) if separator else items
    response = post(http, dynatrace, LOGS, body, content_type=content_type)
    assert response.status == 413
    assert "Too many records" in error_of(response)["message"]


def test_events_payload_limit_is_one_megabyte(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """The Events API refuses bodies over the general 1 MB API payload limit."""
    event = {"eventType": "CUSTOM_INFO", "title": "t", "properties": {"k": "v" * 1_000_000}}
    assert post(http, dynatrace, EVENTS, event).status == 413


def test_record_older_than_24_hours_refuses_the_whole_request(http: urllib3.PoolManager) -> None:
    """One record older than 24 h (by the emulator's clock) makes it a 400; nothing is stored."""
    now = 1_765_000_000_000
    with DynatraceEmulator(clock=lambda: now / 1000) as dt:
        old = now - 24 * HOUR_MS - 1000
        response = post(
            http, dt, LOGS, [{"content": "fresh"}, {"content": "old", "timestamp": old}]
        )
        assert response.status == 400
        assert "older than 24 hours" in error_of(response)["message"]
        assert dt.records == []
        almost = now - 24 * HOUR_MS + 60_000
        assert post(http, dt, LOGS, [{"content": "late", "timestamp": almost}]).status == 204
        assert dt.records[0].timestamp == almost
        old_otlp = otlp_body(LogRecord(time_unix_nano=old * 1_000_000))
        assert post(http, dt, OTLP, old_otlp, content_type=PROTOBUF).status == 400


# -- routing and auth ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/v2/logs/ingest/", "/api/v2/metrics/ingest", "/", "/e/x/v2/logs/ingest"]
)
def test_unknown_path_is_404(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager, path: str
) -> None:
    """A path that is not an ingest endpoint is a 404 with an ErrorEnvelope."""
    response = post(http, dynatrace, path, {"content": "x"})
    assert response.status == 404
    error_of(response)


def test_refused_requests_are_recorded_decoded(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """Even a 404 is in `requests`, with its gzip body decoded and its status."""
    assert post(http, dynatrace, "/api/v1/logs", {"content": "x"}, compress=True).status == 404
    [request] = dynatrace.requests
    assert (request.path, request.status, request.body) == (
        "/api/v1/logs",
        404,
        b'{"content": "x"}',
    )
    assert json.loads(request.response_body)["error"]["code"] == 404


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager, method: str
) -> None:
    """Only POST is served on an ingest endpoint."""
    response = http.request(method, dynatrace.url + LOGS)
    assert (response.status, response.headers["Allow"]) == (405, "POST")
    error_of(response)


def test_environment_prefix(http: urllib3.PoolManager) -> None:
    """With `env_id`, `/e/{env_id}` and bare paths are served; another environment is a 404."""
    with DynatraceEmulator(env_id="abc12345") as dt:
        assert post(http, dt, "/e/abc12345" + LOGS, {"content": "a"}).status == 204
        assert post(http, dt, LOGS, {"content": "b"}).status == 204
        assert post(http, dt, "/e/other" + LOGS, {"content": "c"}).status == 404
    with DynatraceEmulator() as dt:
        assert (
            post(http, dt, "/e/anything" + OTLP, otlp_body(), content_type=PROTOBUF).status == 200
        )


@pytest.mark.parametrize("group", sorted(VALID))
@pytest.mark.parametrize(
    "auth",
    [
        None,
        "Api-Token",
        "Api-Token not-a-token",
        "Api-Token dt0c01.AAAAAAAAAAAAAAAAAAAAAAAA." + "B" * 64,  # well-formed, never issued
        "Basic dXNlcjpwYXNz",
    ],
)
def test_missing_malformed_or_unknown_token_is_401(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager, group: str, auth: str | None
) -> None:
    """Every authenticated endpoint answers 401 with an ErrorEnvelope."""
    path, content_type, body, _ = VALID[group]
    response = post(http, dynatrace, path, body(), content_type=content_type, auth=auth)
    assert response.status == 401
    error_of(response)


@pytest.mark.parametrize(
    ("group", "scope"),
    [
        ("logs", "logs.ingest"),
        ("otlp", "logs.ingest"),
        ("events", "events.ingest"),
        ("security", "openpipeline.events_security.custom"),
    ],
)
def test_scopes(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager, group: str, scope: str
) -> None:
    """A token lacking the endpoint's scope is a 403 naming the scope; holding it passes."""
    path, content_type, body, success = VALID[group]
    wrong = dynatrace.mint_token(scopes=("metrics.ingest",))
    response = post(
        http, dynatrace, path, body(), content_type=content_type, auth=f"Api-Token {wrong}"
    )
    assert response.status == 403
    assert scope in error_of(response)["message"]
    right = dynatrace.mint_token(scopes=(scope,))
    response = post(
        http, dynatrace, path, body(), content_type=content_type, auth=f"Api-Token {right}"
    )
    assert response.status == success


def test_platform_token_is_a_bearer_token(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """A `dt0s16` platform token works as `Bearer`, not as `Api-Token`, and vice versa."""
    platform = dynatrace.mint_token(scopes=("logs.ingest",), platform=True)
    assert platform.startswith("dt0s16.")
    assert post(http, dynatrace, LOGS, {"content": "x"}, auth=f"Bearer {platform}").status == 204
    assert post(http, dynatrace, LOGS, {"content": "x"}, auth=f"Api-Token {platform}").status == 401
    assert (
        post(http, dynatrace, LOGS, {"content": "x"}, auth=f"Bearer {dynatrace.token}").status
        == 401
    )


def test_token_in_query_works_and_is_redacted(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """`?api-token=` authenticates, and neither it nor the header value is recorded."""
    assert (
        post(
            http, dynatrace, f"{LOGS}?api-token={dynatrace.token}", {"content": "x"}, auth=None
        ).status
        == 204
    )
    assert post(http, dynatrace, LOGS, {"content": "y"}).status == 204
    first, second = dynatrace.requests
    assert first.query == {"api-token": "<redacted>"}
    assert second.headers["authorization"] == "Api-Token <redacted>"
    assert dynatrace.token not in repr(dynatrace.requests)
    assert dynatrace.records[0].attributes == {}


# -- OTLP --------------------------------------------------------------------------------------


def test_otlp_records_are_decoded(dynatrace: DynatraceEmulator, http: urllib3.PoolManager) -> None:
    """OTLP protobuf is decoded per section 3.1 and answered with an empty response message."""
    record = otlp_record(
        "boom",
        severity_text="ERROR",
        trace_id=bytes(range(16)),
        span_id=bytes(range(8)),
        attributes=attrs({"http.route": "/x", "retry": 2}),
    )
    body = otlp_body(record, resource={"service.name": "checkout"})
    response = post(http, dynatrace, OTLP, body, content_type=PROTOBUF, compress=True)
    assert (response.status, response.headers["Content-Type"]) == (200, PROTOBUF)
    assert ExportLogsServiceResponse.FromString(response.data) == ExportLogsServiceResponse()
    [received] = dynatrace.records
    assert (received.content, received.loglevel, received.status) == ("boom", "ERROR", "ERROR")
    assert received.trace_id == bytes(range(16)).hex()
    assert received.span_id == "0001020304050607"
    assert received.attributes == {"service.name": "checkout", "http.route": "/x", "retry": 2}
    assert received.endpoint == "otlp"


def test_otlp_map_body_follows_the_structure(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """A map body is flattened into attributes, or one JSON content string with structure=raw."""
    body = otlp_body(otlp_record({"message": "hi", "user": {"id": "u1"}}))  # type: ignore[arg-type]
    assert post(http, dynatrace, OTLP, body, content_type=PROTOBUF).status == 200
    assert post(http, dynatrace, f"{OTLP}?structure=raw", body, content_type=PROTOBUF).status == 200
    flattened, raw = dynatrace.records
    assert (flattened.content, flattened.attributes) == ("hi", {"user.id": "u1"})
    assert (raw.content, raw.attributes) == ('{"message":"hi","user":{"id":"u1"}}', {})


@pytest.mark.parametrize("content_type", ["application/json", "application/x-protobuf-json", None])
def test_otlp_accepts_only_binary_protobuf(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager, content_type: str | None
) -> None:
    """OTLP/JSON or a missing type is a 400 saying only binary protobuf is supported."""
    response = post(http, dynatrace, OTLP, {"resourceLogs": []}, content_type=content_type)
    assert response.status == 400
    assert "protobuf" in error_of(response)["message"]


def test_otlp_malformed_protobuf_is_400(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """Bytes that are not an ExportLogsServiceRequest are a 400."""
    response = post(http, dynatrace, OTLP, b"\xff\xff\xff\xff", content_type=PROTOBUF)
    assert response.status == 400
    error_of(response)


# -- OneAgent's local API ------------------------------------------------------------------------


def test_oneagent_logs_need_no_token(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """`/v2/logs/ingest` ignores Authorization and answers 204 with `Server: EEC`."""
    for auth in (None, "Api-Token garbage"):
        response = post(http, dynatrace, "/v2/logs/ingest", {"content": "local"}, auth=auth)
        assert (response.status, response.headers["Server"]) == (204, "EEC")
    assert {r.endpoint for r in dynatrace.records} == {"oneagent_logs"}


@pytest.mark.parametrize("path", ["/v2/logs/ingest", "/v2/events/ingest"])
@pytest.mark.parametrize("encoding", ["gzip", "identity"])
def test_oneagent_refuses_content_encoding(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager, path: str, encoding: str
) -> None:
    """OneAgent does not support Content-Encoding: any such header is a 400."""
    body = gzip.compress(b'{"content": "x"}') if encoding == "gzip" else b'{"content": "x"}'
    response = post(http, dynatrace, path, body, auth=None, headers={"Content-Encoding": encoding})
    assert response.status == 400
    assert "Content-Encoding" in error_of(response)["message"]
    assert dynatrace.records == []
    assert dynatrace.events == []


def test_oneagent_events_answer_like_the_events_api(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """`/v2/events/ingest` needs no token and answers 201 with EventIngestResults."""
    event = {"eventType": "CUSTOM_DEPLOYMENT", "title": "v2"}
    response = post(http, dynatrace, "/v2/events/ingest", event, auth=None)
    assert response.status == 201
    assert json.loads(response.data)["eventIngestResults"][0]["status"] == "OK"
    assert dynatrace.events == [event]


# -- Events API v2 -------------------------------------------------------------------------------


def test_event_is_accepted_with_results(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """A valid event gets 201 with reportCount and a correlationId, and is stored."""
    event = {"eventType": "ERROR_EVENT", "title": "disk full", "properties": {"disk": "/"}}
    response = post(http, dynatrace, EVENTS, event)
    assert response.status == 201
    document = json.loads(response.data)
    assert document["reportCount"] == 1
    [result] = document["eventIngestResults"]
    assert result["status"] == "OK"
    int(result["correlationId"], 16)
    assert dynatrace.events == [event]


@pytest.mark.parametrize(
    "event",
    [
        {"title": "no type"},
        {"eventType": "CUSTOM_THING", "title": "unknown type"},
        {"eventType": "CUSTOM_INFO"},
        {"eventType": "CUSTOM_INFO", "title": ""},
        {"eventType": "CUSTOM_INFO", "title": "t", "startTime": "yesterday"},
        {"eventType": "CUSTOM_INFO", "title": "t", "properties": ["a"]},
        ["not an object"],
    ],
)
def test_event_schema_violations_are_400(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager, event: Any
) -> None:
    """A missing/unknown eventType, a missing title or a wrongly typed field is a 400."""
    response = post(http, dynatrace, EVENTS, event)
    assert response.status == 400
    error_of(response)
    assert dynatrace.events == []


def test_event_problems_are_reported_per_event(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """Property limits and time windows give INVALID_METADATA/INVALID_TIMESTAMPS per event."""
    now = now_ms()
    events = [
        {"eventType": "CUSTOM_INFO", "title": "ok", "properties": {"k": "v" * 4096}},
        {
            "eventType": "CUSTOM_INFO",
            "title": "many",
            "properties": {str(i): "v" for i in range(101)},
        },
        {"eventType": "CUSTOM_INFO", "title": "long key", "properties": {"k" * 101: "v"}},
        {"eventType": "CUSTOM_INFO", "title": "long value", "properties": {"k": "v" * 4097}},
        {"eventType": "ERROR_EVENT", "title": "stale", "startTime": now - 7 * HOUR_MS},
        {"eventType": "CUSTOM_INFO", "title": "week old info", "startTime": now - 7 * 24 * HOUR_MS},
    ]
    response = post(http, dynatrace, EVENTS, events)
    assert response.status == 201
    document = json.loads(response.data)
    assert [r["status"] for r in document["eventIngestResults"]] == [
        "OK",
        "INVALID_METADATA",
        "INVALID_METADATA",
        "INVALID_METADATA",
        "INVALID_TIMESTAMPS",
        "OK",
    ]
    assert document["reportCount"] == 2
    assert [e["title"] for e in dynatrace.events] == ["ok", "week old info"]


def test_event_bad_json_is_400(dynatrace: DynatraceEmulator, http: urllib3.PoolManager) -> None:
    """An events body that is not JSON is a 400."""
    response = post(http, dynatrace, EVENTS, "{eventType")
    assert response.status == 400
    error_of(response)


# -- OpenPipeline security events -----------------------------------------------------------------


def test_security_events_on_both_paths(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """New and legacy paths take an object or a list: 202, stored with `_endpoint`/`_legacy`."""
    response = post(
        http, dynatrace, SECURITY + "?source=ci&finding=q", [{"finding": "a"}, {"n": 1}]
    )
    assert (response.status, response.data) == (202, b"")
    assert post(http, dynatrace, LEGACY_SECURITY, {"finding": "b"}).status == 202
    assert dynatrace.security_events == [
        {
            "finding": "q",
            "overwritten1.finding": "a",
            "source": "ci",
            "_endpoint": "scanner",
            "_legacy": False,
        },
        {"n": 1, "source": "ci", "finding": "q", "_endpoint": "scanner", "_legacy": False},
        {"finding": "b", "_endpoint": "scanner", "_legacy": True},
    ]


def test_security_endpoint_configuration(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """Unknown endpoint names and disabled paths are 404s."""
    dynatrace.security_endpoints = {"my-scanner"}
    known = "/platform/ingest/custom/security.events/my-scanner"
    assert post(http, dynatrace, known, {"a": 1}).status == 202
    assert post(http, dynatrace, SECURITY, {"a": 1}).status == 404
    dynatrace.new_security_path_enabled = False
    assert post(http, dynatrace, known, {"a": 1}).status == 404
    legacy = "/platform/ingest/custom/events.security/my-scanner"
    assert post(http, dynatrace, legacy, {"a": 1}).status == 202
    dynatrace.legacy_security_path_enabled = False
    response = post(http, dynatrace, legacy, {"a": 1})
    assert response.status == 404
    error_of(response)
    assert len(dynatrace.security_events) == 2


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "{"])
def test_security_event_body_must_be_objects(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager, body: str
) -> None:
    """A security body that is not an object or a list of objects is a 400."""
    response = post(http, dynatrace, SECURITY, body)
    assert response.status == 400
    error_of(response)


# -- scripted replies --------------------------------------------------------------------------


def test_scripted_replies_are_consumed_in_order(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """Replies are answered FIFO; only the 2xx one stores the records."""
    dynatrace.enqueue("logs", Reply(503), Reply(503, headers={"Retry-After": "1"}), Reply(204))
    first = post(http, dynatrace, LOGS, {"content": "x"})
    second = post(http, dynatrace, LOGS, {"content": "x"})
    third = post(http, dynatrace, LOGS, {"content": "x"})
    assert [first.status, second.status, third.status] == [503, 503, 204]
    assert error_of(first) == {"code": 503, "message": "Service Unavailable"}
    assert second.headers["Retry-After"] == "1"
    assert len(dynatrace.records) == 1
    assert [r.status for r in dynatrace.requests] == [503, 503, 204]


def test_scripts_are_per_endpoint_group(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """A reply scripted for one group does not touch another; OneAgent paths share theirs."""
    dynatrace.enqueue("otlp", Reply(502))
    dynatrace.enqueue("events", Reply(429))
    assert post(http, dynatrace, LOGS, {"content": "x"}).status == 204
    assert post(http, dynatrace, "/v2/events/ingest", {"title": "x"}, auth=None).status == 429
    assert post(http, dynatrace, OTLP, otlp_body(), content_type=PROTOBUF).status == 502


def test_scripted_headers_and_bodies(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """Rate-limit headers pass through; a dict body is sent as JSON, bytes as they are."""
    limits = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1"}
    dynatrace.enqueue(
        "logs",
        Reply(429, headers=limits),
        Reply(400, body={"error": {"code": 400, "message": "custom"}}),
        Reply(500, body=b"plain failure", headers={"Content-Type": "text/plain"}),
    )
    throttled = post(http, dynatrace, LOGS, {"content": "x"})
    assert throttled.status == 429 and throttled.headers["X-RateLimit-Remaining"] == "0"
    assert error_of(post(http, dynatrace, LOGS, {"content": "x"}))["message"] == "custom"
    assert post(http, dynatrace, LOGS, {"content": "x"}).data == b"plain failure"


def test_scripted_success_still_runs_normal_handling(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """A 2xx script cannot make a refused request pass, and stores what it accepts."""
    dynatrace.enqueue("logs", Reply(204, headers={"X-Trace": "1"}), Reply(202))
    refused = post(http, dynatrace, LOGS, {"content": "x"}, auth=None)
    assert (refused.status, refused.headers["X-Trace"]) == (401, "1")
    accepted = post(http, dynatrace, LOGS, {"content": "y"})
    assert accepted.status == 202
    assert [r.content for r in dynatrace.records] == ["y"]


def test_scripted_partial_success_for_logs(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """`partial_rejected` answers 200 naming the indexes and stores only the others."""
    dynatrace.enqueue("logs", Reply(partial_rejected=[1, 4]))
    response = post(http, dynatrace, LOGS, [{"content": str(i)} for i in range(5)])
    assert success_message(response) == (
        "Only a part of input events were ingested due to event invalidity. "
        "Rejected event indexes: [1, 4]"
    )
    assert [r.content for r in dynatrace.records] == ["0", "2", "3"]


def test_scripted_partial_success_for_otlp(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """On OTLP, `partial_rejected` fills `partial_success` in the response message."""
    dynatrace.enqueue("otlp", Reply(partial_rejected=[0]))
    body = otlp_body(otlp_record("a"), otlp_record("b"))
    response = post(http, dynatrace, OTLP, body, content_type=PROTOBUF)
    assert response.status == 200
    partial = ExportLogsServiceResponse.FromString(response.data).partial_success
    assert partial.rejected_log_records == 1
    assert "[0]" in partial.error_message
    assert [r.content for r in dynatrace.records] == ["b"]


def test_hang_never_answers(dynatrace: DynatraceEmulator, http: urllib3.PoolManager) -> None:
    """A hanging reply reads the request and never answers: the client times out."""
    dynatrace.enqueue("logs", Reply(hang=True))
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        post(http, dynatrace, LOGS, {"content": "x"}, timeout=0.3)
    [request] = dynatrace.requests
    assert (request.status, json.loads(request.body)) == (None, {"content": "x"})
    assert dynatrace.records == []
    assert post(http, dynatrace, LOGS, {"content": "y"}).status == 204


def test_hang_holds_the_socket_until_the_emulator_stops() -> None:
    """A hanging connection stays open with no answer until `stop()`, which closes it."""
    dt = DynatraceEmulator().start()
    try:
        dt.enqueue("logs", Reply(hang=True))
        with socket.create_connection(("127.0.0.1", dt.port), timeout=0.3) as sock:
            sock.sendall(raw_request(dt, LOGS, b'{"content": "x"}'))
            with pytest.raises(TimeoutError):
                sock.recv(1)
            dt.stop()
            sock.settimeout(5)
            assert sock.recv(1) == b""
    finally:
        dt.stop()


def test_reset_closes_the_connection_abruptly(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """A reset reply closes the connection with a TCP RST and no answer."""
    dynatrace.enqueue("logs", Reply(reset=True))
    with pytest.raises(urllib3.exceptions.ProtocolError) as error:
        post(http, dynatrace, LOGS, {"content": "x"})
    # exactly a reset: http.client's RemoteDisconnected (a FIN) subclasses ConnectionResetError
    assert type(error.value.args[1]) is ConnectionResetError
    assert [r.status for r in dynatrace.requests] == [None]
    assert post(http, dynatrace, LOGS, {"content": "y"}).status == 204


def test_delay_answers_late_after_storing(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """A delayed reply stores first, so a client that times out has still delivered."""
    dynatrace.enqueue("logs", Reply(204, delay=1.0))
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        post(http, dynatrace, LOGS, {"content": "x"}, timeout=0.2)
    assert [r.content for r in dynatrace.wait_for_records(1)] == ["x"]


def test_reset_forgets_data_and_scripts(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """`reset()` clears records, requests, events and scripted replies."""
    post(http, dynatrace, LOGS, {"content": "x"})
    post(http, dynatrace, EVENTS, {"eventType": "CUSTOM_INFO", "title": "t"})
    dynatrace.enqueue("logs", Reply(503))
    dynatrace.reset()
    assert (dynatrace.records, dynatrace.requests, dynatrace.events) == ([], [], [])
    assert post(http, dynatrace, LOGS, {"content": "y"}).status == 204


def test_enqueue_rejects_unknown_groups(dynatrace: DynatraceEmulator) -> None:
    """Scripting an unknown endpoint group is a ValueError, not a silent no-op."""
    with pytest.raises(ValueError, match="unknown endpoint group"):
        dynatrace.enqueue("metrics", Reply(503))  # type: ignore[arg-type]


# -- waiting, threads, lifecycle ---------------------------------------------------------------


def test_wait_for_records_explains_a_timeout(
    dynatrace: DynatraceEmulator, http: urllib3.PoolManager
) -> None:
    """On timeout, `wait_for_records` raises AssertionError showing the last answers."""
    post(http, dynatrace, LOGS, {"content": "x"}, auth=None)
    with pytest.raises(AssertionError) as error:
        dynatrace.wait_for_records(1, timeout=0.1)
    assert "got 0" in str(error.value)
    assert "401" in str(error.value) and "Missing authorization" in str(error.value)


def test_concurrent_clients_lose_nothing(dynatrace: DynatraceEmulator) -> None:
    """Records from several client threads all arrive, each exactly once."""

    def client(worker: int) -> None:
        pool = urllib3.PoolManager(retries=False)
        for batch in range(20):
            items = [{"content": f"{worker}-{batch}-{i}"} for i in range(10)]
            assert post(pool, dynatrace, LOGS, items).status == 204
        pool.clear()

    threads = [threading.Thread(target=client, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    contents = [r.content for r in dynatrace.wait_for_records(800)]
    assert len(contents) == len(set(contents)) == 800


def test_callbacks_see_every_record_and_event(http: urllib3.PoolManager) -> None:
    """`on_record` and `on_event` are called for everything that is stored."""
    seen: list[Any] = []
    with DynatraceEmulator(on_record=seen.append, on_event=lambda kind, e: seen.append(kind)) as dt:
        post(http, dt, LOGS, [{"content": "a"}, {"content": "b"}])
        post(http, dt, EVENTS, {"eventType": "CUSTOM_INFO", "title": "t"})
        post(http, dt, SECURITY, {"a": 1})
    assert [s.content if isinstance(s, ReceivedRecord) else s for s in seen] == [
        "a",
        "b",
        "events",
        "security",
    ]


def raw_request(dt: DynatraceEmulator, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Api-Token {dt.token}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def test_stop_closes_keep_alive_connections_and_start_rebinds() -> None:
    """After `stop()` an open keep-alive connection is closed; `start()` reuses the port."""
    dt = DynatraceEmulator().start()
    try:
        port = dt.port
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(raw_request(dt, LOGS, b'{"content": "x"}'))
            assert sock.recv(65536).startswith(b"HTTP/1.1 204")
            dt.stop()
            assert sock.recv(1) == b""
        dt.start()
        assert dt.port == port
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(raw_request(dt, LOGS, b'{"content": "y"}'))
            assert sock.recv(65536).startswith(b"HTTP/1.1 204")
    finally:
        dt.stop()


def test_chunked_request_body(dynatrace: DynatraceEmulator) -> None:
    """A chunked request body is read like a sized one."""
    body = b'[{"content": "chunked"}]'
    head = (
        f"POST {LOGS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Api-Token {dynatrace.token}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:5], body[5:]))
    with socket.create_connection(("127.0.0.1", dynatrace.port), timeout=5) as sock:
        sock.sendall(head.encode() + chunks + b"0\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 204")
    assert dynatrace.records[0].content == "chunked"


# -- real Fluent Bit traffic ---------------------------------------------------------------------


def flatten(attributes: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The fixture's nested attribute view in the flattened data model."""
    flat: dict[str, Any] = {}
    for key, value in attributes.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def as_view(record: ReceivedRecord) -> dict[str, Any]:
    return {
        "timestamp_key": record.timestamp_key,
        "timestamp_ms": record.timestamp,
        "loglevel": record.loglevel,
        "loglevel_key": record.loglevel_key,
        "content": record.content,
        "content_key": record.content_key,
        "attributes": record.attributes,
    }


def replay(
    http: urllib3.PoolManager, dt: DynatraceEmulator, capture: dict[str, Any], query: str = ""
) -> None:
    """Send every captured request again, with the emulator's token, expecting the same status."""
    for request in capture["requests"]:
        headers = {
            name: value
            for name, value in request["headers"].items()
            if name not in ("Host", "Content-Length", "Authorization", "Connection")
        }
        headers["Authorization"] = f"Api-Token {dt.token}"
        kind = request["body_kind"]
        body = base64.b64decode(request["body"]) if kind == "base64" else request["body"].encode()
        if headers.get("Content-Encoding") == "gzip":
            body = gzip.compress(body)
        response = http.request(
            "POST", dt.url + request["path"] + query, body=body, headers=headers
        )
        assert response.status == request["status"], response.data


@pytest.mark.parametrize("name", ["http-json.json", "http-json-gzip.json"])
def test_fluent_bit_json_traffic_reaches_the_documented_view(
    http: urllib3.PoolManager, name: str
) -> None:
    """Fluent Bit's JSON requests are accepted and read exactly as the fixture's view says."""
    capture = json.loads((FLUENT_BIT / name).read_text())
    latest = max(v["timestamp_ms"] for v in capture["dynatrace_view"])
    with DynatraceEmulator(env_id="abc12345", clock=lambda: latest / 1000 + 60) as dt:
        replay(http, dt, capture)
        expected = [
            {
                **view,
                "timestamp_ms": int(view["timestamp_ms"]),
                "loglevel_key": view.get("loglevel_key"),
                "attributes": flatten(view["attributes"]),
            }
            for view in capture["dynatrace_view"]
        ]
        assert [as_view(r) for r in dt.records] == expected


def test_fluent_bit_json_traffic_in_the_raw_model(http: urllib3.PoolManager) -> None:
    """With structure=raw, the same traffic keeps nested objects as JSON strings."""
    capture = json.loads((FLUENT_BIT / "http-json.json").read_text())
    latest = max(v["timestamp_ms"] for v in capture["dynatrace_view"])
    with DynatraceEmulator(clock=lambda: latest / 1000 + 60) as dt:
        replay(http, dt, capture, query="?structure=raw")
        expected = [
            {
                k: json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else v
                for k, v in view["attributes"].items()
            }
            for view in capture["dynatrace_view"]
        ]
        assert [r.attributes for r in dt.records] == expected


def test_fluent_bit_otlp_traffic_is_decoded(http: urllib3.PoolManager) -> None:
    """Fluent Bit's OTLP requests are accepted (200) and match the decoded messages."""
    capture = json.loads((FLUENT_BIT / "opentelemetry-otlp.json").read_text())
    expected = [
        {
            "timestamp": int(record["timeUnixNano"]) // 1_000_000,
            "content": record["body"]["stringValue"],
            "loglevel": "NONE",
            "attributes": {},
        }
        for message in capture["otlp_decoded"]
        for resource_logs in message["resourceLogs"]
        for scope_logs in resource_logs["scopeLogs"]
        for record in scope_logs["logRecords"]
    ]
    latest = max(e["timestamp"] for e in expected)
    with DynatraceEmulator(env_id="abc12345", clock=lambda: latest / 1000 + 60) as dt:
        replay(http, dt, capture)
        received = [
            {
                "timestamp": r.timestamp,
                "content": r.content,
                "loglevel": r.loglevel,
                "attributes": r.attributes,
            }
            for r in dt.records
        ]
        assert received == expected
