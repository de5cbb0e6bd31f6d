"""The events examples run to completion against the emulator, as a user would run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dt_exporter.testing import DynatraceEmulator, Reply

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(dt: DynatraceEmulator, name: str, *args: str,
                extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DT_", "OTEL_"))}
    env.update({"DT_ENDPOINT": dt.url, "DT_API_TOKEN": dt.token, **(extra_env or {})})
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], env=env,
                          capture_output=True, text=True, timeout=90, check=False)


def test_deployment_event_example_marks_the_deployment(dynatrace):
    """deployment_event.py exits 0 and one CUSTOM_DEPLOYMENT event arrives for the service."""
    done = run_example(dynatrace, "deployment_event.py",
                       extra_env={"SERVICE_NAME": "payments", "RELEASE_VERSION": "2.0.1"})
    assert done.returncode == 0, done.stderr
    [event] = dynatrace.events
    assert event["eventType"] == "CUSTOM_DEPLOYMENT"
    assert event["title"] == "Deployed payments 2.0.1"
    assert event["entitySelector"] == "type(SERVICE),entityName.equals(payments)"
    assert event["properties"]["deployment.version"] == "2.0.1"


def test_deployment_event_example_fails_the_step_when_refused(dynatrace):
    """When Dynatrace refuses the event, the example exits non-zero (a CI step must fail)."""
    dynatrace.enqueue("events", Reply(400))
    done = run_example(dynatrace, "deployment_event.py")
    assert done.returncode == 1 and "HTTP 400" in done.stderr
    assert dynatrace.events == []


def test_security_finding_example_delivers_every_finding(dynatrace):
    """security_finding.py exits 0 and its three findings arrive at the named endpoint."""
    dynatrace.security_endpoints = {"trivy-findings"}
    done = run_example(dynatrace, "security_finding.py", "trivy-findings")
    assert done.returncode == 0, done.stderr
    assert "delivered 3" in done.stdout
    findings = dynatrace.security_events
    assert sorted(f["finding.id"] for f in findings) == [
        "CVE-2023-44487", "CVE-2023-4863", "CVE-2024-3094"]
    assert {f["_endpoint"] for f in findings} == {"trivy-findings"}
