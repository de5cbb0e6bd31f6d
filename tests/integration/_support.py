"""Helpers the integration tests import: one fast backoff and one way to wait for delivery."""

from __future__ import annotations

from typing import Any, Final, Protocol

from dt_exporter import DeliveryStats, DynatraceLogExporter

#: Backoff and timeouts that keep a retry test short without changing what it exercises.
FAST: Final[dict[str, Any]] = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05,
                               "timeout_s": 2.0}


class _Flushable(Protocol):
    def flush(self, timeout_s: float = ...) -> bool: ...
    def stats(self) -> DeliveryStats: ...


def settle(sender: DynatraceLogExporter | _Flushable, timeout_s: float = 10.0) -> DeliveryStats:
    """Flush `sender` (an exporter, an events client, a handler), then its stats, balanced."""
    if isinstance(sender, DynatraceLogExporter):
        flushed = sender.force_flush(int(timeout_s * 1000))
    else:
        flushed = sender.flush(timeout_s)
    assert flushed, "flush did not finish"
    stats = sender.stats()
    assert stats.balanced, stats
    return stats
