"""`setup_dynatrace()` called again, or after someone else set OpenTelemetry's globals: nothing is
built twice, and the SDK's "Overriding of current ..." warnings never reach Dynatrace.

Each case runs in its own interpreter: OpenTelemetry's global providers can be set once per
process, so the test process itself must not set them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dt_exporter.testing import DynatraceEmulator

REPO = Path(__file__).resolve().parents[2]

PRELUDE = """
import logging, warnings
from opentelemetry import _logs, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.trace import TracerProvider
from dt_exporter import setup_dynatrace
logging.getLogger().setLevel(logging.INFO)
log = logging.getLogger("app")
"""

CASES = {
    "called twice": """
        first = setup_dynatrace("twice")
        second = setup_dynatrace("other-name", endpoint="http://127.0.0.1:1")
        assert second is first, "the second call built a new setup"
        log.info("hello")
        first.shutdown()
    """,
    "globals set by other code": """
        _logs.set_logger_provider(LoggerProvider())
        trace.set_tracer_provider(TracerProvider())
        handles = setup_dynatrace("late")
        log.info("hello")
        handles.shutdown()
    """,
    "set up again after shutdown": """
        first = setup_dynatrace("first")
        log.info("hello")
        first.shutdown()
        second = setup_dynatrace("second")
        assert second is not first
        log.info("hello again")
        second.shutdown()
    """,
}
EXPECTED = {
    "called twice": (["hello"], "already set up in this process"),
    "globals set by other code": (["hello"], "LoggerProvider and TracerProvider was already set"),
    "set up again after shutdown": (["hello", "hello again"],
                                    "LoggerProvider and TracerProvider was already set"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_second_pipeline_and_no_override_warning_in_dynatrace(
    dynatrace: DynatraceEmulator, case: str
) -> None:
    """Dynatrace receives each application record once and no "Overriding of current" record;
    the program is told by one RuntimeWarning on stderr."""
    script = PRELUDE + textwrap.dedent(CASES[case])
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "DT_ENDPOINT": dynatrace.url, "DT_API_TOKEN": dynatrace.token,
             "DT_EXPORTER_ENRICHMENT": "false"},
    )
    assert done.returncode == 0, done.stderr
    contents, warning = EXPECTED[case]
    assert sorted(r.content for r in dynatrace.records) == contents
    assert not any("Overriding" in r.content for r in dynatrace.records)
    assert done.stderr.count("RuntimeWarning") == 1, done.stderr
    assert warning in done.stderr
    assert "Overriding of current" not in done.stderr
