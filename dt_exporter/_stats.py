"""Accounting for every record: received = delivered + dropped (by reason) + queued + in flight."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    """A consistent snapshot of one exporter's accounting.

    `dropped` reasons: `too_old` (older than Dynatrace's 24 h window), `queue_full` (evicted from a
    full buffer), `record_too_large`, `http_<code>` (permanent answers), `retry_exhausted`,
    `rejected_by_server` (200 partial success), `shutdown` (still queued when shutdown's deadline
    ran out), `already_shutdown`, `misconfigured`, `self_log` (the exporter's own log lines,
    never shipped back), `unmappable`, `spool_corrupt`. `truncated` counts values that were cut or
    rewritten to fit Dynatrace's limits (the record itself was still sent).
    """

    received: int
    delivered: int
    dropped: Mapping[str, int]
    truncated: Mapping[str, int]
    queued_records: int
    queued_bytes: int
    in_flight: int
    requests: int
    retries: int
    partial_successes: int
    oldest_queued_age_s: float = 0.0  # age of the oldest queued record (by its timestamp)
    spool_bytes: int = 0  # this process's files in the disk spool
    possible_duplicates: int = 0
    #: records the disk spool could not hold (disk full, ...): they were kept in memory only
    spool_write_failed: int = 0

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @property
    def balanced(self) -> bool:
        """The invariant every test checks: no record unaccounted for."""
        accounted = self.delivered + self.dropped_total + self.queued_records + self.in_flight
        return self.received == accounted


class Accounting:
    """Thread-safe counters behind `DeliveryStats`."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Zero everything (a forked child starts its own books)."""
        self._lock = threading.Lock()
        self.received = 0
        self.delivered = 0
        self.requests = 0
        self.retries = 0
        self.partial_successes = 0
        self.possible_duplicates = 0
        self.spool_write_failed = 0
        self.in_flight = 0
        self._dropped: Counter[str] = Counter()
        self._truncated: Counter[str] = Counter()

    def receive(self, records: int) -> None:
        with self._lock:
            self.received += records

    def deliver(self, records: int) -> None:
        with self._lock:
            self.delivered += records

    def drop(self, reason: str, records: int) -> None:
        if records:
            with self._lock:
                self._dropped[reason] += records

    def merge(self, dropped: Mapping[str, int], truncated: Mapping[str, int]) -> None:
        with self._lock:
            self._dropped.update(dropped)
            self._truncated.update(truncated)

    def count(self, *, requests: int = 0, retries: int = 0, partial: int = 0,
              duplicates: int = 0, spool_write_failed: int = 0) -> None:
        with self._lock:
            self.spool_write_failed += spool_write_failed
            self.requests += requests
            self.retries += retries
            self.partial_successes += partial
            self.possible_duplicates += duplicates

    def set_in_flight(self, records: int) -> None:
        with self._lock:
            self.in_flight = records

    def snapshot(
        self, queued_records: int, queued_bytes: int, oldest_age_s: float = 0.0,
        spool_bytes: int = 0  # this process's files in the disk spool,
    ) -> DeliveryStats:
        with self._lock:
            return DeliveryStats(
                received=self.received,
                delivered=self.delivered,
                dropped=MappingProxyType(dict(self._dropped)),
                truncated=MappingProxyType(dict(self._truncated)),
                queued_records=queued_records,
                queued_bytes=queued_bytes,
                in_flight=self.in_flight,
                requests=self.requests,
                retries=self.retries,
                partial_successes=self.partial_successes,
                oldest_queued_age_s=oldest_age_s,
                spool_bytes=spool_bytes,
                possible_duplicates=self.possible_duplicates,
                spool_write_failed=self.spool_write_failed,
            )
