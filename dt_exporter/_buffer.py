"""A queue of finished request bodies, bounded in bytes.

Overflow policy: drop the OLDEST bodies to make room (recent logs matter most while an outage
lasts); the caller counts what was evicted as `queue_full`. A body larger than the whole bound is
refused outright.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class Queued(Protocol):
    """What the queue needs of an item: its bytes, its records, its oldest record's time."""

    @property
    def size(self) -> int: ...
    @property
    def records(self) -> int: ...
    @property
    def oldest_ns(self) -> int: ...


Body = TypeVar("Body", bound=Queued)


class BodyQueue(Generic[Body]):
    """FIFO of request bodies (or items wrapping one), thread-safe, bounded by their sizes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._bodies: deque[Body] = deque()
        self._bytes = 0
        self._records = 0
        self._ready = threading.Condition(threading.Lock())

    def put(self, body: Body, wait_s: float = 0.0) -> list[Body]:
        """Queue `body`; return the bodies dropped to make room (`body` itself if it can't fit).

        With `wait_s`, first wait up to that long for room (producers that may wait, like the
        CLI's `send`); waiting and queueing happen under one lock, so nothing slips in between.
        """
        if body.size > self.max_bytes:
            return [body]
        evicted: list[Body] = []
        with self._ready:
            if wait_s > 0:
                self._ready.wait_for(lambda: self._has_room(body.size), wait_s)
            while not self._has_room(body.size):
                old = self._bodies.popleft()
                self._bytes -= old.size
                self._records -= old.records
                evicted.append(old)
            self._bodies.append(body)
            self._bytes += body.size
            self._records += body.records
            self._ready.notify_all()  # the consumer, lingering for company, among others
        return evicted

    def wait_for_room(self, size: int, timeout: float | None) -> bool:
        """Block until `size` more bytes fit, without queueing anything; False on timeout.
        (For a producer that wants to stay interruptible between short waits.)"""
        with self._ready:
            return self._ready.wait_for(lambda: self._has_room(size), timeout)

    def _has_room(self, size: int) -> bool:
        """`size` more bytes fit (an empty queue always takes one body). Call under the lock."""
        return not self._bodies or self._bytes + size <= self.max_bytes

    def put_front(self, bodies: list[Body]) -> None:
        """Return bodies to the head of the queue (split halves, unsent work), ignoring the bound:
        they were already counted in it once."""
        with self._ready:
            for body in reversed(bodies):
                self._bodies.appendleft(body)
                self._bytes += body.size
                self._records += body.records
            self._ready.notify()

    def get(self, timeout: float | None) -> Body | None:
        """The oldest body, waiting up to `timeout` seconds; None if none came."""
        with self._ready:
            if not self._bodies and not self._ready.wait_for(lambda: bool(self._bodies), timeout):
                return None
            body = self._bodies.popleft()
            self._bytes -= body.size
            self._records -= body.records
            self._ready.notify_all()  # producers waiting for room
            return body

    def get_while(self, accept: Callable[[Body], bool]) -> list[Body]:
        """Take bodies from the head for as long as `accept` says yes (without waiting)."""
        taken: list[Body] = []
        with self._ready:
            while self._bodies and accept(self._bodies[0]):
                body = self._bodies.popleft()
                self._bytes -= body.size
                self._records -= body.records
                taken.append(body)
            if taken:
                self._ready.notify_all()  # producers waiting for room
        return taken

    def wait_for_more(self, count: int, timeout: float) -> bool:
        """Wait up to `timeout` seconds until more than `count` bodies are queued (or a
        `wake()`); True if there are."""
        with self._ready:
            if len(self._bodies) <= count:
                self._ready.wait(timeout)
            return len(self._bodies) > count

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a body or a `wake()`, without taking it."""
        with self._ready:
            return bool(self._bodies) or self._ready.wait(timeout)

    def drain(self) -> list[Body]:
        """Take every queued body at once."""
        with self._ready:
            bodies = list(self._bodies)
            self._bodies.clear()
            self._bytes = self._records = 0
            self._ready.notify_all()  # producers waiting for room
            return bodies

    def peek(self) -> Body | None:
        """The head of the queue, left in place."""
        with self._ready:
            return self._bodies[0] if self._bodies else None

    def wake(self) -> None:
        with self._ready:
            self._ready.notify_all()

    @property
    def oldest_ns(self) -> int:
        """Timestamp of the oldest record at the head of the queue (0: empty or unknown)."""
        with self._ready:
            return self._bodies[0].oldest_ns if self._bodies else 0

    @property
    def depth(self) -> tuple[int, int]:
        """(records, bytes) queued now."""
        with self._ready:
            return self._records, self._bytes

    def __len__(self) -> int:
        with self._ready:
            return len(self._bodies)
