"""Zero-code: the `opentelemetry_instrumentor` entry point that adds `SpanEventBridge`.

Under `opentelemetry-instrument` this runs after the SDK providers exist. Disable it with
`OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=dynatrace_span_events`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from dt_exporter.bridge import SpanEventBridge

_log = logging.getLogger(__name__)


class SpanEventBridgeInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Adds one `SpanEventBridge` to the global SDK tracer provider."""

    _bridge: SpanEventBridge | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        provider = kwargs.get("tracer_provider") or trace.get_tracer_provider()
        add = getattr(provider, "add_span_processor", None)
        if not callable(add):
            _log.warning("dt_exporter span-event bridge not installed: no SDK TracerProvider "
                         "(is OTEL_TRACES_EXPORTER set and a configurator installed?)")
            return
        bridge = SpanEventBridge(kwargs.get("logger_provider"))
        add(bridge)
        type(self)._bridge = bridge

    def _uninstrument(self, **kwargs: Any) -> None:
        bridge = type(self)._bridge
        if bridge is not None:  # span processors cannot be removed; a disabled one is inert
            bridge.enabled = False
            type(self)._bridge = None
