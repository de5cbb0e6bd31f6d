"""dt_exporter: ship OpenTelemetry data to Dynatrace, fast and without losing it."""

from dt_exporter._version import __version__
from dt_exporter.config import Endpoint, ExporterConfig, Secret
from dt_exporter.errors import ConfigError, DtExporterError, TransportError
from dt_exporter.exporter import DynatraceLogExporter
from dt_exporter.limits import CLASSIC, GRAIL, LimitProfile
from dt_exporter.stats import DeliveryStats

__all__ = [
    "CLASSIC",
    "GRAIL",
    "ConfigError",
    "DeliveryStats",
    "DtExporterError",
    "DynatraceLogExporter",
    "Endpoint",
    "ExporterConfig",
    "LimitProfile",
    "Secret",
    "TransportError",
    "__version__",
]
