"""What the integration tests share: a fresh emulator per test (`emulator`), one fast backoff
(`FAST`) and one `settle` (in `_support.py`, importable as `from _support import ...`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dt_exporter.testing import DynatraceEmulator


@pytest.fixture
def emulator() -> Iterator[DynatraceEmulator]:
    """A local Dynatrace on 127.0.0.1, new for each test, stopped after it."""
    with DynatraceEmulator() as dt:
        yield dt
