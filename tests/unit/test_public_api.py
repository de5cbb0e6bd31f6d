"""The public surface: what `import dt_exporter` promises, and its entry points."""

from __future__ import annotations

from importlib.metadata import entry_points

import dt_exporter
from dt_exporter import DynatraceLogExporter, DynatraceResourceDetector
from dt_exporter.instrumentor import SpanEventBridgeInstrumentor


def test_all_lists_each_public_name_once_and_each_exists():
    """`__all__` (kept in order by ruff's RUF022) has no duplicates, and every name exists."""
    assert len(set(dt_exporter.__all__)) == len(dt_exporter.__all__)
    assert {"DynatraceHandler", "DynatraceLogExporter", "SpanEventBridge",
            "setup_dynatrace"} <= set(dt_exporter.__all__)
    for name in dt_exporter.__all__:
        assert hasattr(dt_exporter, name), name


def test_logs_exporter_entry_point_names_the_class():
    """OTEL_LOGS_EXPORTER=dynatrace resolves to our LogRecordExporter subclass, as the SDK
    requires (a class, not a factory)."""
    (point,) = entry_points(group="opentelemetry_logs_exporter", name="dynatrace")
    assert point.load() is DynatraceLogExporter


def test_resource_detector_entry_point_names_the_detector_class():
    """OTEL_EXPERIMENTAL_RESOURCE_DETECTORS=dynatrace resolves to our ResourceDetector subclass,
    which the SDK instantiates without arguments."""
    from opentelemetry.sdk.resources import ResourceDetector

    (point,) = entry_points(group="opentelemetry_resource_detector", name="dynatrace")
    assert point.load() is DynatraceResourceDetector
    assert isinstance(DynatraceResourceDetector(), ResourceDetector)


def test_span_event_bridge_instrumentor_entry_point():
    """The bridge's instrumentor is registered under the name users disable it with."""
    (point,) = entry_points(group="opentelemetry_instrumentor", name="dynatrace_span_events")
    assert point.load() is SpanEventBridgeInstrumentor
    assert tuple(SpanEventBridgeInstrumentor().instrumentation_dependencies()) == ()


def test_package_is_typed():
    """py.typed ships with the package, so users' type checkers read our annotations."""
    from importlib.resources import files

    assert files("dt_exporter").joinpath("py.typed").is_file()
