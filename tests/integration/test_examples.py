"""Every example in examples/ runs against the emulator, so none can rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(script: str, env: dict[str, str], *, instrument: bool = False) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DT_", "OTEL_"))}
    command = [sys.executable, str(EXAMPLES / script)]
    if instrument:
        command.insert(0, str(Path(sys.executable).parent / "opentelemetry-instrument"))
    result = subprocess.run(command, env=clean | env, capture_output=True, text=True,
                            timeout=90, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_stdlib_logging_example(emulator):
    """Four stdlib log lines arrive at their levels, the exception with its type."""
    run("stdlib_logging.py", {"DT_ENDPOINT": emulator.url, "DT_API_TOKEN": emulator.token})
    records = {r.content: r for r in emulator.wait_for_records(4)}
    assert records["user signed in"].attributes["user.id"] == "u-42"
    assert records["disk at 91%"].loglevel == "WARN"
    assert records["lookup failed"].attributes["exception.type"] == "KeyError"
    assert records["debug detail: cache size 128"].loglevel == "DEBUG"


def test_span_events_example(emulator):
    """Both span events arrive as records of one trace; the exception is an ERROR."""
    out = run("span_events.py", {"DT_ENDPOINT": emulator.url, "DT_API_TOKEN": emulator.token})
    records = {r.content: r for r in emulator.wait_for_records(2)}
    trace_id = out.split()[1].rstrip(":")
    exception = records["inventory service did not answer within 2 s"]
    assert exception.loglevel == "ERROR"
    assert {r.trace_id for r in records.values()} == {trace_id}
    assert records["cache.miss"].attributes["cache.key"] == "order:1042"


def test_oneagent_example(emulator):
    """The OneAgent example sends token-free, uncompressed JSON to /v2/logs/ingest."""
    run("oneagent_local.py", {"DT_ENDPOINT": f"{emulator.url}/v2/logs/ingest"})
    (record,) = emulator.wait_for_records(1)
    assert record.content == "sent through OneAgent, token-free"
    assert emulator.requests[0].path == "/v2/logs/ingest"
    assert "authorization" not in emulator.requests[0].headers


def test_web_service_example(emulator):
    """The auto-instrumented FastAPI service delivers its logs and the request's exception,
    correlated to the request's trace."""
    run("web_service.py", {
        "DT_ENDPOINT": emulator.url, "DT_API_TOKEN": emulator.token,
        "OTEL_LOGS_EXPORTER": "dynatrace", "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none", "OTEL_SERVICE_NAME": "example-web",
    }, instrument=True)
    records = emulator.wait_for_records(3, timeout=10)
    lookups = [r for r in records if r.content == "order looked up"]
    assert sorted(r.attributes["order.id"] for r in lookups) == [0, 1042]
    bridged = [r for r in records if r.attributes.get("event.name") == "exception"]
    assert bridged, [r.content for r in records]
    assert bridged[0].content == "order 0 does not exist"
    assert bridged[0].trace_id in {r.trace_id for r in lookups}
    assert all(r.attributes["service.name"] == "example-web" for r in records)
