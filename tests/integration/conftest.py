"""What the integration tests share: a fresh emulator per test (`emulator`), one that serves
HTTPS with a private CA (`tls_emulator`), one fast backoff (`FAST`) and one `settle` (the last
two in `_support.py`, importable as `from _support import ...`)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from dt_exporter.testing import DynatraceEmulator


@pytest.fixture
def emulator() -> Iterator[DynatraceEmulator]:
    """A local Dynatrace on 127.0.0.1, new for each test, stopped after it."""
    with DynatraceEmulator() as dt:
        yield dt


@pytest.fixture
def tls_emulator(tmp_path: Path) -> Iterator[tuple[DynatraceEmulator, Path]]:
    """The emulator as an ActiveGate with a private CA: (emulator, the CA's PEM file)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with DynatraceEmulator(ssl_context=context) as dt:
        yield dt, ca_file
