"""dt_exporter: ship OpenTelemetry data to Dynatrace, fast and without losing it."""

from dt_exporter._enrichment import DynatraceResourceDetector
from dt_exporter._stats import DeliveryStats
from dt_exporter._version import __version__
from dt_exporter.bridge import SpanEventBridge
from dt_exporter.config import BridgeConfig, Endpoint, ExporterConfig, Secret
from dt_exporter.errors import ConfigError, DtExporterError, TransportError
from dt_exporter.event_model import Event, EventType, InvalidEventError
from dt_exporter.event_routing import EventRoutingExporter
from dt_exporter.events import EventResult, EventsClient, SecurityEventsClient, SendReceipt
from dt_exporter.exporter import DynatraceLogExporter
from dt_exporter.handler import DynatraceHandler
from dt_exporter.limits import CLASSIC, GRAIL, LimitProfile
from dt_exporter.setup import DynatraceSetup, setup_dynatrace

__all__ = [
    "CLASSIC",
    "GRAIL",
    "BridgeConfig",
    "ConfigError",
    "DeliveryStats",
    "DtExporterError",
    "DynatraceHandler",
    "DynatraceLogExporter",
    "DynatraceResourceDetector",
    "DynatraceSetup",
    "Endpoint",
    "Event",
    "EventResult",
    "EventRoutingExporter",
    "EventType",
    "EventsClient",
    "ExporterConfig",
    "InvalidEventError",
    "LimitProfile",
    "Secret",
    "SecurityEventsClient",
    "SendReceipt",
    "SpanEventBridge",
    "TransportError",
    "__version__",
    "setup_dynatrace",
]
