"""The transport against peers that misbehave for real, on 127.0.0.1: a server that keeps saying
`Retry-After: 0`, one that drips its answer a byte at a time, one that answers 300 MB."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Final

import pytest

from dt_exporter._retry import Backoff, Outcome, classify
from dt_exporter._transport import MAX_BODY_BYTES, Transport
from dt_exporter.config import ProxySettings, Secret
from dt_exporter.errors import TransportError

Handler = Callable[[socket.socket, bytes], None]
HEADERS: Final = {"Content-Type": "application/json; charset=utf-8"}


class Peer:
    """A tiny HTTP/1.1 server on 127.0.0.1 whose answers `handler` writes byte by byte.

    It reads each request (headers, then Content-Length bytes) and calls `handler(conn, request)`;
    the handler may keep the connection for the next request by returning normally. `requests`
    and `connections` count what arrived; `sent` adds up what handlers report writing.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.requests = 0
        self.connections = 0
        self.sent = 0
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/api/v2/logs/ingest"

    def add_sent(self, n: int) -> None:
        with self._lock:
            self.sent += n

    def __enter__(self) -> Peer:
        self._accepting.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._accepting.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with self._lock:
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        buffer = b""
        with conn:
            while not self._stop.is_set():
                try:
                    head, _, rest = buffer.partition(b"\r\n\r\n")
                    if not _:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        buffer += chunk
                        continue
                    length = _content_length(head)
                    while len(rest) < length:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        rest += chunk
                    buffer = rest[length:]
                    with self._lock:
                        self.requests += 1
                    self._handler(conn, head + b"\r\n\r\n" + rest[:length])
                except TimeoutError:
                    continue
                except OSError:  # the client hung up on us: what these peers provoke
                    return


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


@pytest.fixture
def transport() -> Iterator[Transport]:
    t = Transport(timeout_s=2.0)
    yield t
    t.close()


def _answer(status: str, body: bytes = b"", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}"
            "Content-Type: application/json\r\n\r\n").encode() + body


# -- Retry-After: 0 ----------------------------------------------------------------------------


def test_retry_after_zero_is_paced_by_the_backoff_floor(transport: Transport) -> None:
    """503 + Retry-After: 0, driven as the channel does (post, classify, wait the delay):
    with a 0.2 s initial backoff, at most 1 + 1.0/0.2 requests reach the server in 1 s."""

    def unavailable(conn: socket.socket, request: bytes) -> None:
        conn.sendall(_answer("503 Service Unavailable", b"{}", "Retry-After: 0\r\n"))

    backoff, rng = Backoff(initial_s=0.2, max_s=5.0), random.Random(1)
    with Peer(unavailable) as peer:
        window_ends = time.monotonic() + 1.0
        attempt = 0
        while time.monotonic() < window_ends:
            response = transport.post(peer.url, b"[]", HEADERS)
            verdict = classify(response.status, response.headers, time.time())
            assert verdict.outcome is Outcome.RETRY and verdict.retry_after_s == 0.0
            attempt += 1
            time.sleep(backoff.delay(attempt, rng, verdict.retry_after_s))
        requests = peer.requests
    assert 1 <= requests <= 6


# -- a server that drips -----------------------------------------------------------------------


def _dripper(answer: bytes, every_s: float = 0.5) -> Callable[[Peer], Handler]:
    def make(peer: Peer) -> Handler:
        def drip(conn: socket.socket, request: bytes) -> None:
            for byte in answer:
                if peer.stopping:
                    return
                conn.sendall(bytes([byte]))
                peer.add_sent(1)
                time.sleep(every_s)

        return drip

    return make


class _LatePeer(Peer):
    """A Peer whose handler needs the peer itself (to count and to stop)."""

    def __init__(self, make: Callable[[Peer], Handler]) -> None:
        super().__init__(lambda conn, request: self._late(conn, request))
        self._late = make(self)


# 60 bytes of status line and headers: 30 s to drip in full, far past the 2 s deadline.
DRIPPED_HEADERS: Final = _answer("200 OK", b"", "X-Padding: " + "x" * 10 + "\r\n")
# Headers at once, then a 40-byte body dripped: 20 s.
DRIPPED_BODY: Final = _answer("400 Bad Request", b'{"error":{"code":400,"message":"slow..."}}')


@pytest.mark.parametrize(
    "handler",
    [
        pytest.param(_dripper(DRIPPED_HEADERS), id="headers-dripped"),
        pytest.param(
            lambda peer: _then_drip(peer, DRIPPED_BODY.split(b"\r\n\r\n")[0] + b"\r\n\r\n",
                                    DRIPPED_BODY.split(b"\r\n\r\n", 1)[1]),
            id="body-dripped",
        ),
    ],
)
def test_a_dripping_server_cannot_hold_an_attempt_past_the_timeout(
    transport: Transport, handler: Callable[[Peer], Handler]
) -> None:
    """DT_EXPORTER_TIMEOUT bounds the whole answer: a drip of one byte per 0.5 s that would take
    20-30 s ends as a timeout, with the answer far from complete."""
    with _LatePeer(handler) as peer:
        with pytest.raises(TransportError) as caught:
            transport.post(peer.url, b"[]", HEADERS)
        assert caught.value.kind == "timeout"
        assert "DT_EXPORTER_TIMEOUT" in str(caught.value)
        assert peer.sent < 20  # at 0.5 s a byte, the deadline cut it at about 4 bytes


def _then_drip(peer: Peer, head: bytes, body: bytes) -> Handler:
    dripper = _dripper(body)(peer)

    def handler(conn: socket.socket, request: bytes) -> None:
        conn.sendall(head)
        dripper(conn, request)

    return handler


def test_a_timed_out_attempt_leaves_the_transport_usable(transport: Transport) -> None:
    """After a dripping peer timed out, the same transport delivers to a healthy peer."""

    def accepted(conn: socket.socket, request: bytes) -> None:
        conn.sendall(_answer("204 No Content"))

    with _LatePeer(_dripper(DRIPPED_HEADERS)) as slow, Peer(accepted) as healthy:
        with pytest.raises(TransportError):
            transport.post(slow.url, b"[]", HEADERS)
        assert transport.post(healthy.url, b"[]", HEADERS).status == 204


def test_a_proxy_dripping_its_connect_answer_is_bounded_too() -> None:
    """The deadline covers the CONNECT through a proxy: one that drips "200 Connection
    established" ends as a timeout."""
    tunnel_ok = b"HTTP/1.1 200 Connection established\r\nX-Padding: xxxxxxxxxx\r\n\r\n"
    with _LatePeer(_dripper(tunnel_ok)) as proxy:
        address = f"http://127.0.0.1:{proxy.url.split(':')[2].split('/')[0]}"
        settings = ProxySettings(None, Secret(address), (), "", "HTTPS_PROXY")
        transport = Transport(timeout_s=2.0, proxy=settings)
        with pytest.raises(TransportError) as caught:
            transport.post("https://127.0.0.1:9/api/v2/logs/ingest", b"[]", HEADERS)
        transport.close()
        assert caught.value.kind == "timeout"
        assert proxy.sent < 20


def test_a_server_that_never_reads_cannot_hold_the_send() -> None:
    """The deadline covers sending: a 64 MB body to a peer that accepts but never reads
    (the socket buffers fill, sendall blocks) ends as a timeout."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def hold() -> None:
        conn, _ = listener.accept()
        held.append(conn)

    accepting = threading.Thread(target=hold, daemon=True)
    accepting.start()
    transport = Transport(timeout_s=2.0)
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/api/v2/logs/ingest"
        with pytest.raises(TransportError) as caught:
            transport.post(url, b"x" * (64 * 1024 * 1024), HEADERS)
        assert caught.value.kind == "timeout"
    finally:
        transport.close()
        accepting.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


# -- bodies: bounded -------------------------------------------------------------------------


def test_a_small_answer_is_read_whole_and_keeps_the_connection(transport: Transport) -> None:
    """Dynatrace's error JSON arrives in full, and the next request reuses the connection."""
    error = b'{"error":{"code":400,"message":"Invalid JSON"}}'

    def bad_request(conn: socket.socket, request: bytes) -> None:
        conn.sendall(_answer("400 Bad Request", error))

    with Peer(bad_request) as peer:
        first = transport.post(peer.url, b"[]", HEADERS)
        second = transport.post(peer.url, b"[]", HEADERS)
        assert (first.status, first.body, second.body) == (400, error, error)
        assert (peer.requests, peer.connections) == (2, 1)


def test_a_long_answer_is_cut_at_the_bound_and_its_connection_dropped(
    transport: Transport,
) -> None:
    """Past 64 KiB the rest is discarded: the connection is closed, the next uses a new one."""
    body = b"e" * (MAX_BODY_BYTES * 4)

    def verbose(conn: socket.socket, request: bytes) -> None:
        conn.sendall(_answer("500 Internal Server Error", body))

    with Peer(verbose) as peer:
        first = transport.post(peer.url, b"[]", HEADERS)
        second = transport.post(peer.url, b"[]", HEADERS)
        assert first.status == 500 and first.body == body[:MAX_BODY_BYTES]
        assert second.body == first.body
        assert (peer.requests, peer.connections) == (2, 2)


HUGE: Final = 300 * 1024 * 1024

_CLIENT: Final = """
import json, resource, sys
from dt_exporter._transport import Transport
transport = Transport(timeout_s=10.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
response = transport.post(sys.argv[1], b"[]", {"Content-Type": "application/json"})
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"status": response.status, "body": len(response.body),
                  "rss_kib_before": before, "rss_kib_after": after}))
"""


def test_a_300_mb_answer_costs_the_client_no_memory() -> None:
    """A 300 MB error body (streamed by the server) returns its first 64 KiB, grows the
    client's peak RSS by far less than the body, and most of it is never even sent."""

    def flood(conn: socket.socket, request: bytes) -> None:
        conn.sendall("HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json"
                     f"\r\nContent-Length: {HUGE}\r\n\r\n".encode())
        chunk = b"x" * (1024 * 1024)
        for _ in range(HUGE // len(chunk)):  # a generator's worth: never 300 MB in memory
            conn.sendall(chunk)
            peer.add_sent(len(chunk))

    with Peer(flood) as peer:
        result = subprocess.run(
            [sys.executable, "-c", _CLIENT, peer.url],
            capture_output=True, text=True, timeout=60, check=True,
        )
        sent = peer.sent
    figures = json.loads(result.stdout)
    assert figures["status"] == 500 and figures["body"] == MAX_BODY_BYTES
    grown_mib = (figures["rss_kib_after"] - figures["rss_kib_before"]) / 1024
    assert grown_mib < 16, figures
    assert sent < HUGE // 4
