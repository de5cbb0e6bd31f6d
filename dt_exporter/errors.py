"""The exception tree.

    DtExporterError
    ├── ConfigError        bad configuration: raised early, names the setting, never the token
    ├── InvalidEventError  an Events API event that cannot be built (event_model.py)
    ├── SpoolError         the disk spool could not persist one body (_spool.py; never raised
    │                      to the application: the channel keeps the body in memory)
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


class SpoolError(DtExporterError):
    """The disk spool could not persist a body (disk full, file-size limit, directory gone...).

    `reason` says what failed, in words fit for a log line; it never holds record data.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransportError(DtExporterError):
    """The request did not produce an HTTP response."""

    def __init__(self, kind: TransportErrorKind, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind: TransportErrorKind = kind
