"""A local Dynatrace for tests: `DynatraceEmulator` answers like Dynatrace's ingest APIs.

    from dt_exporter.testing import DynatraceEmulator, Reply

    with DynatraceEmulator() as dt:
        ...  # point the code under test at dt.url with dt.token
        [record] = dt.wait_for_records(1)
        assert record.loglevel == "ERROR"

pytest users get a `dynatrace` fixture from
`pytest_plugins = ["dt_exporter.testing.pytest_plugin"]`.
This package needs only the standard library, orjson and (for OTLP) `opentelemetry-proto`
(`pip install dt_exporter[emulator]`); the exporter itself never imports it.
"""

from dt_exporter.testing._emulator import DynatraceEmulator
from dt_exporter.testing._models import ReceivedRecord, ReceivedRequest, Reply

__all__ = ["DynatraceEmulator", "ReceivedRecord", "ReceivedRequest", "Reply"]
