"""retry: what each response means, Retry-After parsing, and the backoff schedule."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from dt_exporter._retry import (
    PERMANENT_MEANING,
    RETRYABLE_STATUS,
    Backoff,
    Outcome,
    classify,
    classify_error,
    parse_retry_after,
)
from dt_exporter.errors import TransportErrorKind

NOW = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT


@pytest.mark.parametrize(
    ("status", "outcome", "reason"),
    [
        (200, Outcome.PARTIAL, "partial_success"),
        (201, Outcome.PARTIAL, None),
        (202, Outcome.DELIVERED, None),
        (204, Outcome.DELIVERED, None),
        (400, Outcome.DROP, "http_400"),
        (401, Outcome.DROP, "http_401"),
        (402, Outcome.DROP, "http_402"),
        (403, Outcome.DROP, "http_403"),
        (404, Outcome.DROP, "http_404"),
        (407, Outcome.DROP, "http_407"),
        (408, Outcome.RETRY, "http_408"),
        (413, Outcome.SPLIT, "http_413"),
        (429, Outcome.RETRY, "http_429"),
        (500, Outcome.RETRY, "http_500"),
        (501, Outcome.DROP, "http_501"),
        (502, Outcome.RETRY, "http_502"),
        (503, Outcome.RETRY, "http_503"),
        (504, Outcome.RETRY, "http_504"),
        (301, Outcome.DROP, "http_301"),
        (302, Outcome.DROP, "http_302"),
        (307, Outcome.DROP, "http_307"),
    ],
)
def test_status_classification(status: int, outcome: Outcome, reason: str | None) -> None:
    """Dynatrace's documented codes: 2xx deliver, 413 splits, 429/5xx retry, the rest drop."""
    verdict = classify(status, {}, NOW)
    assert verdict.outcome is outcome
    if reason is not None:
        assert verdict.reason == reason
    assert verdict.immediate is False


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_never_success(status: int) -> None:
    """A redirect is not followed and not taken as delivered (the token must not follow it)."""
    assert classify(status, {"location": "https://elsewhere.example.com"}, NOW).outcome not in (
        Outcome.DELIVERED,
        Outcome.PARTIAL,
    )


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_status_carries_retry_after(status: int) -> None:
    """A retryable answer passes the server's Retry-After to the scheduler."""
    assert classify(status, {"retry-after": "17"}, NOW).retry_after_s == 17.0


@pytest.mark.parametrize("status", [204, 400, 413])
def test_non_retryable_status_ignores_retry_after(status: int) -> None:
    """Retry-After means nothing on an answer that will not be retried."""
    assert classify(status, {"retry-after": "17"}, NOW).retry_after_s is None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 7 ", 7.0),
        ("1000000000", 1e9),
        (formatdate(NOW + 30, usegmt=True), 30.0),
        (formatdate(NOW + 3600, usegmt=True), 3600.0),
        (formatdate(NOW - 60, usegmt=True), 0.0),
        (None, None),
        ("", None),
        ("   ", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("0x10", None),
        ("Tue, 99 Nov 2023 22:13:50 GMT", None),
        ("\u00b2", None),
        ("\u00b9\u00b2", None),
    ],
)
def test_retry_after_parsing(header: str | None, seconds: float | None) -> None:
    """Retry-After is delay-seconds or an HTTP-date relative to now; anything else is ignored."""
    assert parse_retry_after(header, NOW) == seconds


def test_retry_after_date_depends_on_the_injected_clock() -> None:
    """The same HTTP-date gives a shorter wait later, never a negative one."""
    header = formatdate(NOW + 100, usegmt=True)
    assert parse_retry_after(header, NOW) == 100.0
    assert parse_retry_after(header, NOW + 40) == 60.0
    assert parse_retry_after(header, NOW + 500) == 0.0


@pytest.mark.parametrize(
    ("kind", "failures", "immediate"),
    [
        ("reset", 0, True),
        ("reset", 1, False),
        ("reset", 5, False),
        ("connect", 0, False),
        ("timeout", 0, False),
        ("tls", 0, False),
        ("protocol", 0, False),
    ],
)
def test_transport_errors_retry_and_only_a_first_reset_is_immediate(
    kind: TransportErrorKind, failures: int, immediate: bool
) -> None:
    """No response means retry; only the first reset (a stale keep-alive) retries at once."""
    verdict = classify_error(kind, failures)
    assert verdict.outcome is Outcome.RETRY
    assert verdict.reason == kind
    assert verdict.immediate is immediate


def test_backoff_without_jitter_doubles_up_to_the_cap() -> None:
    """Attempt n waits initial * 2**(n-1), capped at max_s."""
    backoff = Backoff(initial_s=1.0, max_s=30.0, jitter=0.0)
    rng = random.Random(0)
    assert [backoff.delay(n, rng) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_backoff_survives_huge_attempt_numbers() -> None:
    """A very late attempt still waits max_s, with no overflow."""
    backoff = Backoff(initial_s=0.5, max_s=60.0, jitter=0.0)
    assert backoff.delay(10_000, random.Random(0)) == 60.0


@pytest.mark.parametrize("seed", [0, 1, 42, 2024])
def test_jitter_stays_within_half_and_full_base_and_above_the_floor(seed: int) -> None:
    """With 50 % jitter each delay lies in [max(initial, base/2), base]."""
    backoff = Backoff(initial_s=1.0, max_s=30.0, jitter=0.5)
    rng = random.Random(seed)
    for attempt in range(1, 12):
        base = min(30.0, 2.0 ** (attempt - 1))
        for _ in range(20):
            delay = backoff.delay(attempt, rng)
            assert max(1.0, base * 0.5) <= delay <= base


class _ExtremeRng(random.Random):
    """Always draws the same value: the edges of the jitter range."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize("draw", [0.0, 0.5, 0.999999])
@pytest.mark.parametrize("jitter", [0.5, 0.9, 1.0])
def test_jittered_schedule_never_goes_below_the_initial_backoff(draw: float, jitter: float) -> None:
    """Even full jitter at its extreme never waits less than initial_s (the floor)."""
    backoff = Backoff(initial_s=0.2, max_s=5.0, jitter=jitter)
    delays = [backoff.delay(n, _ExtremeRng(draw)) for n in range(1, 20)]
    assert min(delays) >= 0.2
    assert backoff.floor_s == 0.2


def test_jitter_spreads_clients_apart() -> None:
    """Jittered delays for the same attempt differ, so synchronised clients spread out."""
    backoff = Backoff(initial_s=1.0, max_s=30.0, jitter=0.5)
    rng = random.Random(7)
    delays = {backoff.delay(5, rng) for _ in range(50)}
    assert len(delays) > 40
    assert max(delays) - min(delays) > 4.0  # base 16 s: the spread covers a good part of 8 s


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    """The same seed gives the same schedule."""
    backoff = Backoff()
    first = [backoff.delay(n, random.Random(3)) for n in range(1, 8)]
    second = [backoff.delay(n, random.Random(3)) for n in range(1, 8)]
    assert first == second


@pytest.mark.parametrize("retry_after", [2.0, 45.0, 7200.0])
def test_retry_after_wins_over_the_schedule(retry_after: float) -> None:
    """A server's Retry-After replaces the computed delay, even beyond max_s."""
    backoff = Backoff(initial_s=1.0, max_s=30.0, jitter=0.5)
    assert backoff.delay(3, random.Random(0), retry_after_s=retry_after) == retry_after


@pytest.mark.parametrize("retry_after", [0.0, 0.05, 0.199, -3.0, float("nan")])
@pytest.mark.parametrize("attempt", [1, 2, 10])
def test_retry_after_shorter_than_the_floor_waits_the_floor(
    retry_after: float, attempt: int
) -> None:
    """Retry-After: 0 (or anything under initial_s) waits initial_s: no hot loop."""
    backoff = Backoff(initial_s=0.2, max_s=30.0, jitter=0.5)
    assert backoff.delay(attempt, random.Random(0), retry_after_s=retry_after) == 0.2


def test_retry_after_date_in_the_past_waits_the_floor() -> None:
    """A 503 whose Retry-After date has passed (by the injected clock) waits initial_s."""
    verdict = classify(503, {"retry-after": formatdate(NOW - 600, usegmt=True)}, NOW)
    assert verdict.retry_after_s == 0.0
    backoff = Backoff(initial_s=1.5, max_s=30.0)
    assert backoff.delay(1, random.Random(0), verdict.retry_after_s) == 1.5


def test_a_server_repeating_retry_after_zero_is_paced_by_the_floor() -> None:
    """Fifty 503s with Retry-After: 0 add up to at least fifty initial backoffs of waiting."""
    backoff = Backoff(initial_s=0.2, max_s=30.0)
    rng = random.Random(5)
    waited = 0.0
    for attempt in range(1, 51):
        verdict = classify(503, {"retry-after": "0"}, NOW + waited)
        waited += backoff.delay(attempt, rng, verdict.retry_after_s)
    assert waited >= 50 * 0.2 - 1e-9  # float sums


def test_408_is_a_timeout_and_retries_on_the_schedule() -> None:
    """408 (the server timed out waiting for us) is retried, honouring a Retry-After."""
    assert classify(408, {}, NOW).outcome is Outcome.RETRY
    assert classify(408, {"retry-after": "3"}, NOW).retry_after_s == 3.0
    assert 408 in RETRYABLE_STATUS


def test_407_is_permanent_and_points_at_the_proxy_settings() -> None:
    """A proxy's 407 drops (retrying cannot fix credentials) and says where to look."""
    verdict = classify(407, {"proxy-authenticate": 'Basic realm="proxy"'}, NOW)
    assert verdict.outcome is Outcome.DROP
    assert verdict.reason == "http_407"
    meaning = PERMANENT_MEANING[407]
    assert meaning.startswith("proxy authentication required")
    assert "DT_EXPORTER_PROXY" in meaning and "HTTPS_PROXY" in meaning


@pytest.mark.parametrize("header", ["soon", "-1", "\u00b2", "\u00b3"])
def test_malformed_retry_after_still_retries_on_the_backoff(header: str) -> None:
    """A 503 with a malformed Retry-After is retried on our own schedule, never raising."""
    verdict = classify(503, {"retry-after": header}, NOW)
    assert verdict.outcome is Outcome.RETRY
    assert verdict.retry_after_s is None
