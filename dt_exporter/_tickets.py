"""What the channel gives back and what it runs on: tickets and verdicts, the clock.

`Channel.submit()` returns one `Ticket` per body; it resolves (once every part a 413 split the
body into is final) to a `BodyResult`: records delivered, records dropped by reason, the last
HTTP status and answer. `shutdown()` returns a `ShutdownReport`. The channel reads time and
waits only through a `Clock`, so tests drive its deadlines without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Protocol


class Clock(Protocol):
    """Where the channel gets its time and does its waiting."""

    def monotonic(self) -> float: ...
    def time_ns(self) -> int: ...
    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for `event`; True if it is set."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time_ns(self) -> int:
        return time.time_ns()

    def wait(self, event: threading.Event, timeout_s: float) -> bool:
        return event.wait(max(timeout_s, 0.0))


SYSTEM_CLOCK: Final = SystemClock()


@dataclass(frozen=True, slots=True)
class BodyResult:
    """The final verdict on one submitted body (all of its parts, if a 413 split it)."""

    delivered: int
    dropped: Mapping[str, int]
    status: int | None  # the last HTTP status received for it; None if no answer came
    message: str  # the server's message or the transport's error, never the token
    response: bytes  # the last answer's body (bounded by the transport)
    attempts: int

    @property
    def ok(self) -> bool:
        return not self.dropped


class Ticket:
    """Resolves to the `BodyResult` of one submitted body."""

    __slots__ = ("_attempts", "_delivered", "_done", "_dropped", "_message", "_open",
                 "_response", "_result", "_status")

    def __init__(self) -> None:
        self._done = threading.Event()
        self._open = 1  # jobs (the body, or the parts a 413 split it into) not yet final
        self._delivered = 0
        self._dropped: Counter[str] = Counter()
        self._status: int | None = None
        self._message = ""
        self._response = b""
        self._attempts = 0
        self._result: BodyResult | None = None

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout_s: float | None = None) -> BodyResult | None:
        """The result, waiting up to `timeout_s` for it; None if it is not final by then."""
        self._done.wait(timeout_s)
        return self._result

    @property
    def result(self) -> BodyResult | None:
        return self._result

    @property
    def attempts(self) -> int:
        """Requests made for it so far."""
        return self._attempts

    @property
    def last_status(self) -> int | None:
        """The last HTTP status it got so far (None: no answer yet)."""
        return self._status

    @property
    def last_message(self) -> str:
        return self._message

    # -- the channel's side (under its lock) ----------------------------------------------------

    def _answer(self, status: int | None, message: str, response: bytes) -> None:
        self._attempts += 1
        self._status, self._message, self._response = status, message, response

    def _resolve(self, delivered: int, dropped: tuple[str, int] | None,
                 replaced_by: int = 0) -> None:
        """One job of this ticket ended; `replaced_by` jobs (a 413's halves) take its place."""
        self._delivered += delivered
        if dropped is not None and dropped[1]:
            self._dropped[dropped[0]] += dropped[1]
        self._open += replaced_by - 1
        if self._open <= 0:
            self._result = BodyResult(self._delivered, MappingProxyType(dict(self._dropped)),
                                      self._status, self._message, self._response,
                                      self._attempts)
            self._done.set()


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    """What shutdown left behind: `shutdown` records lost, `left_in_spool` records waiting on
    disk for the next process, `in_flight` records still on the wire when time ran out."""

    drained: bool
    shutdown: int = 0
    left_in_spool: int = 0
    in_flight: int = 0

    @property
    def undelivered(self) -> int:
        return self.shutdown + self.left_in_spool + self.in_flight

    def describe(self) -> str:
        parts = [f"{name} {count}" for name, count in (
            ("shutdown", self.shutdown), ("left_in_spool", self.left_in_spool),
            ("in_flight", self.in_flight)) if count]
        return ", ".join(parts) or "nothing"
