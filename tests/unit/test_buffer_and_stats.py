"""BodyQueue (byte-bounded, drop-oldest) and Accounting (every record accounted for)."""

from __future__ import annotations

from collections import Counter

import pytest

from dt_exporter._buffer import BodyQueue
from dt_exporter._payload import Body
from dt_exporter._stats import Accounting


def body(size: int, records: int = 1, tag: str = "") -> Body:
    data = (tag.encode() + b"x" * size)[:size]
    return Body(route="logs", data=data, records=records, encoding="identity")


# -- BodyQueue -----------------------------------------------------------------------------------


def test_put_within_bound_evicts_nothing() -> None:
    """Bodies that fit are queued in order and counted in depth."""
    queue = BodyQueue(max_bytes=100)
    first, second = body(40, 3, "a"), body(60, 2, "b")
    assert queue.put(first) == []
    assert queue.put(second) == []
    assert queue.depth == (5, 100)
    assert len(queue) == 2
    assert queue.drain() == [first, second]


@pytest.mark.parametrize(
    ("sizes", "incoming", "evicted_indexes", "kept_indexes"),
    [
        ([40, 40], 40, [0], [1]),
        ([30, 30, 30], 90, [0, 1, 2], []),
        ([30, 30, 30], 41, [0, 1], [2]),
        ([30, 30, 30], 10, [], [0, 1, 2]),
        ([50, 10], 50, [0], [1]),
        ([100], 1, [0], []),
    ],
)
def test_overflow_drops_the_oldest_bodies(
    sizes: list[int], incoming: int, evicted_indexes: list[int], kept_indexes: list[int]
) -> None:
    """A full queue evicts its oldest bodies, just enough for the new one, and returns them."""
    queue = BodyQueue(max_bytes=100)
    queued = [body(size, records=i + 1, tag=str(i)) for i, size in enumerate(sizes)]
    for item in queued:
        assert queue.put(item) == []
    new = body(incoming, records=10, tag="new")
    evicted = queue.put(new)
    assert evicted == [queued[i] for i in evicted_indexes]
    remaining = [queued[i] for i in kept_indexes] + [new]
    expected_depth = (sum(b.records for b in remaining), sum(b.size for b in remaining))
    assert queue.depth == expected_depth
    assert queue.depth[1] <= queue.max_bytes
    assert queue.drain() == remaining


def test_body_larger_than_the_bound_is_refused() -> None:
    """A body bigger than the whole queue is returned as dropped, and nothing queued is evicted."""
    queue = BodyQueue(max_bytes=100)
    kept = body(50, 5)
    queue.put(kept)
    huge = body(101, 7)
    assert queue.put(huge) == [huge]
    assert queue.depth == (5, 50)
    assert queue.drain() == [kept]


def test_body_exactly_the_bound_fits() -> None:
    """A body of exactly max_bytes is queued (after evicting everything else)."""
    queue = BodyQueue(max_bytes=100)
    old = body(1)
    queue.put(old)
    exact = body(100, 4)
    assert queue.put(exact) == [old]
    assert queue.depth == (4, 100)


def test_put_front_returns_bodies_to_the_head_in_order() -> None:
    """put_front places the given bodies first, in the order given, ignoring the bound."""
    queue = BodyQueue(max_bytes=100)
    tail = body(80, 1, "t")
    queue.put(tail)
    halves = [body(60, 2, "h1"), body(60, 3, "h2")]
    queue.put_front(halves)
    assert queue.depth == (6, 200)
    assert queue.get(timeout=0) is halves[0]
    assert queue.get(timeout=0) is halves[1]
    assert queue.get(timeout=0) is tail
    assert queue.depth == (0, 0)


def test_get_returns_oldest_then_none_when_empty() -> None:
    """get takes the oldest body and updates depth; an empty queue gives None at once."""
    queue = BodyQueue(max_bytes=1000)
    first, second = body(10, 1), body(20, 2)
    queue.put(first)
    queue.put(second)
    assert queue.get(timeout=0) is first
    assert queue.depth == (2, 20)
    assert queue.get(timeout=0) is second
    assert queue.get(timeout=0) is None


def test_drain_empties_the_queue() -> None:
    """drain hands back every body and leaves depth at zero."""
    queue = BodyQueue(max_bytes=1000)
    items = [body(10 * i, i) for i in range(1, 5)]
    for item in items:
        queue.put(item)
    assert queue.drain() == items
    assert queue.depth == (0, 0)
    assert len(queue) == 0
    assert queue.drain() == []


def test_wait_sees_a_queued_body_without_taking_it() -> None:
    """wait reports a body is ready and leaves it queued; an empty queue reports none."""
    queue = BodyQueue(max_bytes=1000)
    assert queue.wait(0) is False
    queue.put(body(10, 1))
    assert queue.wait(0) is True
    assert len(queue) == 1


# -- Accounting ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("received", "delivered", "drops", "queued", "in_flight", "balanced"),
    [
        (0, 0, {}, 0, 0, True),
        (10, 10, {}, 0, 0, True),
        (10, 5, {"queue_full": 2, "http_400": 1}, 2, 0, True),
        (10, 4, {"too_old": 1}, 2, 3, True),
        (10, 5, {"queue_full": 2}, 2, 0, False),  # one record unaccounted for
        (10, 9, {"retry_exhausted": 2}, 0, 0, False),  # one too many
        (10, 0, {}, 0, 0, False),
    ],
)
def test_snapshot_balance(
    received: int,
    delivered: int,
    drops: dict[str, int],
    queued: int,
    in_flight: int,
    balanced: bool,
) -> None:
    """balanced holds exactly when received = delivered + dropped + queued + in flight."""
    accounting = Accounting()
    accounting.receive(received)
    accounting.deliver(delivered)
    for reason, records in drops.items():
        accounting.drop(reason, records)
    accounting.set_in_flight(in_flight)
    stats = accounting.snapshot(queued_records=queued, queued_bytes=queued * 100)
    assert stats.balanced is balanced
    assert stats.dropped_total == sum(drops.values())
    assert dict(stats.dropped) == drops


def test_drop_of_zero_records_adds_no_reason() -> None:
    """Dropping nothing leaves no empty reason in the stats."""
    accounting = Accounting()
    accounting.drop("queue_full", 0)
    assert dict(accounting.snapshot(0, 0).dropped) == {}


def test_merge_adds_dropped_and_truncated() -> None:
    """merge folds a batch's drop and truncation counters into the totals."""
    accounting = Accounting()
    accounting.drop("record_too_large", 1)
    accounting.merge(Counter({"record_too_large": 2, "too_old": 1}), Counter({"value": 4}))
    accounting.merge(Counter(), Counter({"value": 1, "key": 2}))
    stats = accounting.snapshot(0, 0)
    assert dict(stats.dropped) == {"record_too_large": 3, "too_old": 1}
    assert dict(stats.truncated) == {"value": 5, "key": 2}
    assert stats.dropped_total == 4


def test_counters_accumulate() -> None:
    """requests, retries, partial successes and possible duplicates add up across calls."""
    accounting = Accounting()
    accounting.count(requests=2, retries=1)
    accounting.count(requests=1, partial=1, duplicates=3)
    stats = accounting.snapshot(queued_records=0, queued_bytes=0, oldest_age_s=1.5, spool_bytes=10)
    assert (stats.requests, stats.retries, stats.partial_successes, stats.possible_duplicates) == (
        3,
        1,
        1,
        3,
    )
    assert stats.oldest_queued_age_s == 1.5
    assert stats.spool_bytes == 10


def test_snapshot_is_frozen_and_detached() -> None:
    """A snapshot neither changes with later counting nor can be changed by its reader."""
    accounting = Accounting()
    accounting.receive(3)
    accounting.drop("queue_full", 3)
    stats = accounting.snapshot(0, 0)
    accounting.drop("queue_full", 5)
    accounting.receive(5)
    assert stats.received == 3
    assert stats.dropped["queue_full"] == 3
    with pytest.raises(TypeError):
        stats.dropped["queue_full"] = 0  # type: ignore[index]
