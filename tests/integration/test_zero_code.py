"""`opentelemetry-instrument` with only documented environment variables, in a real subprocess."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dt_exporter.testing import DynatraceEmulator

APP = textwrap.dedent(
    """
    import logging
    from opentelemetry import trace

    logging.getLogger().setLevel(logging.INFO)
    log = logging.getLogger("shop")
    log.info("order accepted", extra={"order.id": 7})
    with trace.get_tracer("shop").start_as_current_span("checkout") as span:
        try:
            raise RuntimeError("payment failed")
        except RuntimeError as exc:
            span.record_exception(exc)
    """
)


#: CPython 3.12.0-3.12.2 refuse new threads in atexit callbacks (python/cpython#113964, fixed in
#: 3.12.3); OpenTelemetry's logging handler starts one in flush() at logging.shutdown
#: (open-telemetry/opentelemetry-python#4752). Every exporter's zero-code app prints this there,
#: the official one's too; it is not ours, and nothing is lost by it (our exporter has shut down).
_UPSTREAM_312_NOISE = re.compile(
    r"Exception ignored in atexit callback: <function shutdown at 0x[0-9a-f]+>\n"
    r"Traceback \(most recent call last\):\n(?:  .*\n)*?"
    r"RuntimeError: can't create new thread at interpreter shutdown\n?")


def without_known_shutdown_noise(stderr: str) -> str:
    """`stderr` less the one upstream traceback above (only where it names logging.shutdown
    and OpenTelemetry's handler flush)."""
    def drop(match: re.Match[str]) -> str:
        text = match.group(0)
        return "" if "flush" in text and "opentelemetry" in text else text

    return _UPSTREAM_312_NOISE.sub(drop, stderr)


def instrument_command() -> list[str]:
    found = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    assert found, "opentelemetry-instrument is installed with the dev extra"
    return [found, sys.executable]


def run_app(tmp_path: Path, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "app.py"
    script.write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DT_", "OTEL_"))}
    env.update(extra_env)
    return subprocess.run([*instrument_command(), str(script)], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.fixture
def emulator():
    with DynatraceEmulator() as dt:
        yield dt


def documented_env(dt: DynatraceEmulator) -> dict[str, str]:
    """The variables the README tells users to set."""
    return {
        "OTEL_LOGS_EXPORTER": "dynatrace",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "zero-code-app",
        "DT_ENDPOINT": dt.url,
        "DT_API_TOKEN": dt.token,
    }


def test_logs_and_span_events_arrive_with_only_environment_variables(tmp_path, emulator):
    """The entry points alone deliver the app's log line and its recorded exception."""
    result = run_app(tmp_path, documented_env(emulator))
    assert result.returncode == 0, result.stderr
    records = emulator.wait_for_records(2, timeout=15)
    by_content = {r.content: r for r in records}
    assert by_content["order accepted"].attributes["service.name"] == "zero-code-app"
    assert by_content["order accepted"].attributes["order.id"] == 7
    exception = by_content["payment failed"]
    assert exception.loglevel == "ERROR"
    assert exception.attributes["exception.type"] == "RuntimeError"
    assert exception.attributes["span.name"] == "checkout"
    assert exception.trace_id and len(exception.trace_id) == 32


def test_bridge_can_be_disabled_by_name(tmp_path, emulator):
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=dynatrace_span_events leaves only the log line."""
    env = documented_env(emulator)
    env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = "dynatrace_span_events"
    result = run_app(tmp_path, env)
    assert result.returncode == 0, result.stderr
    records = emulator.wait_for_records(1, timeout=15)
    assert [r.content for r in records] == ["order accepted"]


def test_bad_configuration_does_not_break_the_app(tmp_path, emulator):
    """A missing token disables only our exporter, with one clear error, and the app runs."""
    env = documented_env(emulator) | {"DT_ENDPOINT": "https://abc123.live.dynatrace.com"}
    del env["DT_API_TOKEN"]
    result = run_app(tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "DT_API_TOKEN" in result.stderr
    assert "Traceback" not in without_known_shutdown_noise(result.stderr), result.stderr
