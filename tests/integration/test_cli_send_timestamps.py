"""`dt-exporter send` reads every timestamp form the same on each Python (issue 14: on 3.10 a
two-day-old `...:49.5Z` or `+0000` line slipped past the stale filter and Dynatrace refused the
whole request)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dt_exporter.testing import DynatraceEmulator

REPO = Path(__file__).resolve().parents[2]


def _iso(epoch_s: float, fraction: str, zone: str) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s)) + fraction + zone


@pytest.mark.parametrize(
    ("fraction", "zone"),
    [(".5", "Z"), ("", "+0000"), (".1234567", "+00:00"), (",25", "z"), (".123456789", "+0000")],
)
def test_an_old_line_is_counted_too_old_and_the_fresh_ones_arrive(
    dynatrace: DynatraceEmulator, tmp_path: Path, fraction: str, zone: str
) -> None:
    """Three fresh lines and one two days old, in an ISO form Python 3.10's fromisoformat does
    not read: the old one is dropped as too_old, the three arrive (not 0 delivered, 4 http_400)."""
    now = time.time()
    lines = [json.dumps({"timestamp": _iso(now - 2 * 86_400, fraction, zone), "content": "old"})]
    lines += [json.dumps({"timestamp": _iso(now - i, fraction, zone), "content": f"fresh {i}"})
              for i in range(3)]
    path = tmp_path / "app.log"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "dt_exporter", "send", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DT_ENDPOINT": dynatrace.url, "DT_API_TOKEN": dynatrace.token},
    )
    assert "dropped 1 (too_old 1)" in result.stdout, result.stdout + result.stderr
    assert "delivered 3" in result.stdout
    assert result.returncode == 1  # something was dropped
    assert sorted(r.content for r in dynatrace.records) == ["fresh 0", "fresh 1", "fresh 2"]
