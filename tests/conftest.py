"""Shared fixtures: a clean environment for every test, and the emulator."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins = ["dt_exporter.testing.pytest_plugin"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No DT_* or OTEL_* variable from the developer's shell may leak into a test."""
    for name in list(os.environ):
        if name.startswith(("DT_", "OTEL_")):
            monkeypatch.delenv(name)
    yield
