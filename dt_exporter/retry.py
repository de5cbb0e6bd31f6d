"""Pure: what a response means, and how long to wait before the next attempt.

Classification follows Dynatrace's documented response codes for the ingest APIs
(https://docs.dynatrace.com/docs/dynatrace-api/environment-api/log-monitoring-v2/post-ingest-logs):
429/502/503/504 are retryable with exponential backoff; 413 asks for a smaller body; 200 is a
partial success; 400/401/402/403/404/501 are permanent. Other 5xx are retried as well (the
Logstash plugin by Dynatrace R&D retries 500); other 4xx and unexpected 3xx are permanent.
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
    415: "the endpoint does not accept this content type",
    501: "not available on this environment (Classic: indexed log storage is not enabled)",
}
RETRYABLE_STATUS: Final = frozenset({429, 500, 502, 503, 504})
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
    """Exponential backoff with jitter: attempt n waits initial * 2**(n-1), capped, then
    randomised into [50 %, 100 %] of that (so synchronised clients spread out)."""

    initial_s: float = 1.0
    max_s: float = 30.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1-based).

        A server's Retry-After wins over our own schedule (it may be longer than max_s: the
        caller's deadline caps it).
        """
        if retry_after_s is not None:
            return retry_after_s
        base = min(self.max_s, self.initial_s * 2.0 ** min(attempt - 1, 32))
        return base * (1.0 - self.jitter * rng.random())
