"""Pure: what a response means, and how long to wait before the next attempt.

Classification follows Dynatrace's documented response codes for the ingest APIs
(https://docs.dynatrace.com/docs/dynatrace-api/environment-api/log-monitoring-v2/post-ingest-logs):
429/502/503/504 are retryable with exponential backoff; 413 asks for a smaller body; 200 is a
partial success; 400/401/402/403/404/501 are permanent. 500 is retried as well (the Logstash
plugin by Dynatrace R&D retries it), and so is 408 (RFC 9110: the server timed out waiting for the
request; nothing was taken). 407 comes from a forward proxy, not from Dynatrace: permanent, with
a meaning that points at the proxy credentials. Other 4xx and unexpected 3xx are permanent.

Backoff has a floor: no wait is ever shorter than the initial backoff, whatever the server's
Retry-After says (0, or an HTTP-date in the past, would otherwise be a hot loop).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final

from dt_exporter.errors import TransportErrorKind


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    PARTIAL = "partial"  # 200 (logs) / 201 (events): read the body, count what it rejected
    RETRY = "retry"
    SPLIT = "split"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    reason: str  # the drop/retry reason used in stats: "http_503", "connect", ...
    retry_after_s: float | None = None
    immediate: bool = False  # retry at once: a stale keep-alive connection, not an outage


#: What each permanent code means on Dynatrace's ingest APIs; used in the one log line we write.
PERMANENT_MEANING: Final[dict[int, str]] = {
    400: "the request was invalid",
    401: "the token is missing, invalid or expired",
    402: "the licence does not cover this (or the DPS budget is used up)",
    403: "the token lacks the scope this endpoint needs",
    404: "no such endpoint here (an ActiveGate without the log module, a wrong path or host)",
    405: "the endpoint does not take POST",
    407: (
        "proxy authentication required: check the credentials in "
        "DT_EXPORTER_PROXY/HTTPS_PROXY"
    ),
    415: "the endpoint does not accept this content type",
    501: "not available on this environment (Classic: indexed log storage is not enabled)",
}
RETRYABLE_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
SUCCESS_STATUS: Final = frozenset({201, 202, 204})


def classify(status: int, headers: Mapping[str, str], now_epoch_s: float) -> Verdict:
    """Map an HTTP status (and its Retry-After) to what the sender does next."""
    if status in SUCCESS_STATUS:
        return Verdict(Outcome.PARTIAL if status == 201 else Outcome.DELIVERED, "delivered")
    if status == 200:
        return Verdict(Outcome.PARTIAL, "partial_success")
    if status == 413:
        return Verdict(Outcome.SPLIT, "http_413")
    if status in RETRYABLE_STATUS:
        retry_after = parse_retry_after(headers.get("retry-after"), now_epoch_s)
        return Verdict(Outcome.RETRY, f"http_{status}", retry_after)
    return Verdict(Outcome.DROP, f"http_{status}")


def classify_error(kind: TransportErrorKind, failures_in_a_row: int) -> Verdict:
    """A request that got no response: always retryable; one reset is a stale connection."""
    immediate = kind == "reset" and failures_in_a_row == 0
    return Verdict(Outcome.RETRY, kind, immediate=immediate)


def parse_retry_after(value: str | None, now_epoch_s: float) -> float | None:
    """RFC 9110 Retry-After: delay-seconds or an HTTP-date; None when absent or malformed."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when: datetime = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_epoch_s)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter and a floor.

    Attempt n waits initial * 2**(n-1), capped at max_s, then randomised into [50 %, 100 %] of
    that (so synchronised clients spread out), and never less than initial_s: the floor. With
    the default 50 % jitter the first retry therefore waits exactly initial_s, the second
    [1, 2] * initial_s, and so on.
    """

    initial_s: float = 1.0
    max_s: float = 30.0
    jitter: float = 0.5

    @property
    def floor_s(self) -> float:
        """The shortest wait delay() ever returns."""
        return self.initial_s

    def delay(self, attempt: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1-based); never below `floor_s`.

        A server's Retry-After wins over our own schedule, raised to the floor when shorter
        (`Retry-After: 0` or a date in the past). It may be longer than max_s: the caller caps
        it by the time left in its retry budget.
        """
        if retry_after_s is not None:
            if not retry_after_s >= self.floor_s:  # also catches NaN
                return self.floor_s
            return retry_after_s
        base = min(self.max_s, self.initial_s * 2.0 ** min(attempt - 1, 32))
        return max(self.floor_s, base * (1.0 - self.jitter * rng.random()))
