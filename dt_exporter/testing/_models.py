"""The values the emulator hands to tests: scripted replies and what it received."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: Scripted replies are queued per group of endpoints (see `DynatraceEmulator.enqueue`).
EndpointGroup = Literal["logs", "otlp", "events", "security"]
ENDPOINT_GROUPS: frozenset[str] = frozenset({"logs", "otlp", "events", "security"})

#: Which endpoint a log record came through.
LogEndpoint = Literal["logs", "otlp", "oneagent_logs"]


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer, consumed by the next request to its endpoint group.

    - `status`: 2xx replies still run normal handling (records are stored, an invalid request
      still gets its error); any other status is answered as is and nothing is stored.
    - `headers`: added to the answer (e.g. `Retry-After`, `X-RateLimit-Reset`).
    - `body`: bytes as is, a dict as JSON; `None` gives an `ErrorEnvelope` for errors.
    - `delay`: seconds to wait before answering (records are already stored by then).
    - `hang`: read the request and never answer; the socket stays open until the client goes
      away or the emulator stops.
    - `reset`: close the connection abruptly (TCP RST, `SO_LINGER` 0) without answering.
    - `partial_rejected`: indexes of records to reject with a partial-success answer.
    """

    status: int = 204
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | dict[str, Any] | None = None
    delay: float = 0.0
    hang: bool = False
    reset: bool = False
    partial_rejected: list[int] | None = None

    def __post_init__(self) -> None:
        if not 200 <= self.status <= 599:
            raise ValueError(f"status must be a final HTTP status (200-599), got {self.status}")
        if self.delay < 0:
            raise ValueError(f"delay must not be negative, got {self.delay}")
        if self.hang and self.reset:
            raise ValueError("a reply cannot both hang and reset the connection")


@dataclass(frozen=True, slots=True)
class ReceivedRecord:
    """One accepted log record, as Dynatrace's documented rules interpret it.

    `timestamp` is epoch milliseconds, or `None` where Dynatrace would use the ingest time (no
    timestamp key, an unparsable value, or more than 10 minutes in the future). The `*_key`
    fields name the input key each special field came from (`None`: default used).
    `attributes` holds the remaining keys in the request's data model: dotted keys (flattened)
    or JSON strings for objects (raw). `raw` is the input as received: the parsed JSON object,
    the text of a `text/plain` body, or the OTLP `LogRecord` message.
    """

    timestamp: int | None
    timestamp_key: str | None
    loglevel: str
    loglevel_key: str | None
    status: str
    content: str
    content_key: str | None
    attributes: dict[str, Any]
    trace_id: str | None
    span_id: str | None
    endpoint: LogEndpoint
    raw: object


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One HTTP request as the emulator saw it.

    `query` maps each parameter to its value (the last one when repeated); `headers` look up
    names case-insensitively and show `Authorization` as `<scheme> <redacted>`; `body` is after
    gzip decoding (cut just past the size limit when too large). `status` is what the emulator
    answered, `None` when it answered nothing (`hang` or `reset`), and `response_body` the body
    of that answer (e.g. the `ErrorEnvelope` explaining a 400).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int | None
    response_body: bytes = b""


class Headers(dict[str, str]):
    """A dict of headers that looks names up case-insensitively, keeping their spelling."""

    def _find(self, name: object) -> str | None:
        if not isinstance(name, str):
            return None
        if dict.__contains__(self, name):
            return name
        folded = name.lower()
        return next((key for key in self if key.lower() == folded), None)

    def __getitem__(self, name: str) -> str:
        key = self._find(name)
        if key is None:
            raise KeyError(name)
        return dict.__getitem__(self, key)

    def __contains__(self, name: object) -> bool:
        return self._find(name) is not None

    def get(self, name: str, default: Any = None) -> Any:
        key = self._find(name)
        return default if key is None else dict.__getitem__(self, key)
