"""The exception tree.

    DtExporterError
    ├── ConfigError        bad configuration: raised early, names the setting, never the token
    ├── InvalidEventError  an Events API event that cannot be built (event_model.py)
    └── TransportError     one HTTP attempt failed below the HTTP layer (kind says how)

`export()` never raises into the application: everything that goes wrong while exporting is
counted in `DeliveryStats` by reason instead.
"""

from __future__ import annotations

from typing import Literal

TransportErrorKind = Literal["connect", "timeout", "tls", "reset", "protocol"]


class DtExporterError(Exception):
    """Base class of every error dt_exporter raises."""


class ConfigError(DtExporterError, ValueError):
    """A setting is missing or invalid. The message names the setting, never a secret value."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


class TransportError(DtExporterError):
    """The request did not produce an HTTP response."""

    def __init__(self, kind: TransportErrorKind, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind: TransportErrorKind = kind
