"""The exporter's own log lines: seen by the user, never shipped.

Two rules:
- Nothing the exporter causes is exported. Every OpenTelemetry logging handler on the root
  logger gets a filter that refuses the exporter's own lines (`dt_exporter.*`) and urllib3's
  lines about our requests (made while `sending()` is active on that thread, whichever thread
  it is); other handlers still see them. The batcher drops any that slip through (a handler
  placed elsewhere) as `self_log`.
- Its warnings and errors reach the user even when the only handler is OpenTelemetry's (a
  zero-code application that configures no logging): `StderrFallback`, on the `dt_exporter`
  logger, writes a WARNING or worse to stderr when no other handler would show it. The lines
  are already rate-limited where they are made (one per reason per minute).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Final

_ROOT: Final = "dt_exporter"
_state = threading.local()
_install_lock = threading.Lock()


@contextlib.contextmanager
def sending() -> Iterator[None]:
    """Mark this thread as inside a dt_exporter request: urllib3's lines are ours."""
    previous = getattr(_state, "sending", False)
    _state.sending = True
    try:
        yield
    finally:
        _state.sending = previous


class _NotOurs(logging.Filter):
    """For OpenTelemetry's handlers: no line the exporter caused."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name == _ROOT or name.startswith(_ROOT + "."):
            return False
        return not (name.startswith("urllib3") and getattr(_state, "sending", False))


_FILTER: Final = _NotOurs()


def _is_opentelemetry_handler(handler: logging.Handler) -> bool:
    return type(handler).__module__.startswith("opentelemetry")


class StderrFallback(logging.Handler):
    """Shows the exporter's warnings on stderr when no handler but OpenTelemetry's would."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if self._shown_elsewhere(record):
            return
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: S110 - a closed stderr must not break the exporter
            pass

    def _shown_elsewhere(self, record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            for handler in logger.handlers:
                if (handler is self or _is_opentelemetry_handler(handler)
                        or getattr(handler, "refuses_own_records", False)):
                    continue  # it would not show our line (DynatraceHandler refuses it)
                if record.levelno >= handler.level:
                    return True
            if not logger.propagate:
                return False
            logger = logger.parent
        return False


_FALLBACK: Final = StderrFallback()


def install() -> None:
    """Idempotent and cheap (called on every export, since OpenTelemetry's handler may be
    added after the exporter): the stderr fallback on `dt_exporter`, the filter on every
    OpenTelemetry handler of the root logger."""
    ours = logging.getLogger(_ROOT)
    if _FALLBACK not in ours.handlers:
        with _install_lock:
            if _FALLBACK not in ours.handlers:
                ours.addHandler(_FALLBACK)
    for handler in logging.getLogger().handlers:
        if _is_opentelemetry_handler(handler) and _FILTER not in handler.filters:
            with _install_lock:
                if _FILTER not in handler.filters:
                    handler.addFilter(_FILTER)
