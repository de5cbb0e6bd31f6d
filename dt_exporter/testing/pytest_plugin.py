"""The `dynatrace` pytest fixture. Enable it with

pytest_plugins = ["dt_exporter.testing.pytest_plugin"]
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dt_exporter.testing import DynatraceEmulator


@pytest.fixture
def dynatrace() -> Iterator[DynatraceEmulator]:
    """A started Dynatrace emulator on 127.0.0.1, fresh for each test and stopped after it."""
    with DynatraceEmulator() as emulator:
        yield emulator
