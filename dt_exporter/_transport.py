"""HTTP I/O only: one POST, one bounded answer, within one deadline.

A keep-alive pool per exporter; TLS verification on; no retries; no redirects; forward proxies
as `requests` honours them (see `ExporterConfig.proxy`).

Three bounds hold whatever the peer does:

- **Time.** `timeout_s` (`DT_EXPORTER_TIMEOUT`) bounds the whole attempt: connect, the proxy's
  CONNECT, the TLS handshake, sending the body, and the full answer, headers included. Each
  socket operation times out at the time left, and a watchdog thread shuts the attempt's socket
  down at the deadline, so a peer that drips one byte at a time cannot hold a sender longer.
  Only name resolution is not interruptible (the system resolver has its own timeouts).
- **Memory.** At most `max_body_bytes` (64 KiB: Dynatrace's error JSON is far smaller) of an
  answer's body are read; the rest is discarded and that connection closed, never pooled.
- **Where the credentials go.** The token goes only to the target (through a proxy only inside
  the CONNECT tunnel for https://); proxy credentials only to the proxy, as
  `Proxy-Authorization`. Neither appears in an exception, a log line or a repr.
"""

from __future__ import annotations

import contextlib
import heapq
import ipaddress
import itertools
import logging
import os
import re
import socket
import ssl
import threading
import time
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import unquote, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    InsecureRequestWarning,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.response import BaseHTTPResponse

from dt_exporter._version import __version__
from dt_exporter.config import DIRECT, ExporterConfig, ProxySettings, Secret, redact_url
from dt_exporter.errors import TransportError

USER_AGENT: Final = f"dt_exporter/{__version__}"
#: The most of an answer's body we read (and keep in memory); the rest is discarded.
MAX_BODY_BYTES: Final = 64 * 1024
_CHUNK: Final = 16 * 1024
_URLLIB3_LOGGERS: Final = ("urllib3.connectionpool", "urllib3.connection", "urllib3.response")
SENDER_THREAD_PREFIX: Final = "dt_exporter-sender"
_MIN_ATTEMPT_S: Final = 0.05  # the smallest DT_EXPORTER_TIMEOUT config.py accepts
_TUNNEL_REFUSED: Final = re.compile(r"Tunnel connection failed: (\d{3})\b ?(.*)")
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes  # at most max_body_bytes of it


class Transport:
    """A keep-alive connection pool for one exporter. Thread-safe (urllib3's pool is)."""

    def __init__(
        self,
        *,
        timeout_s: float,
        ca_bundle: str | None = None,
        verify: bool = True,
        proxy: ProxySettings = DIRECT,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._timeout_s = timeout_s
        self._max_body = max_body_bytes
        self._proxy = proxy
        if not verify:
            _log.warning(
                "TLS certificate verification is OFF (DT_EXPORTER_INSECURE_SKIP_TLS_VERIFY): "
                "anyone on the path can read the token and the data"
            )
        tls: dict[str, Any] = {
            "cert_reqs": ssl.CERT_REQUIRED if verify else ssl.CERT_NONE,
            "ca_certs": ca_bundle,
        }
        self._direct = _watched(urllib3.PoolManager(num_pools=4, maxsize=1, retries=False, **tls))
        self._via: dict[str, urllib3.ProxyManager] = {}
        for url in {u.reveal() for u in (proxy.http, proxy.https) if u is not None}:
            address, auth = _split_proxy_url(url)
            self._via[url] = _watched(urllib3.ProxyManager(
                address, num_pools=4, maxsize=1, retries=False, proxy_headers=auth, **tls
            ))
        self._verify = verify
        _quiet_own_urllib3_logs()

    @classmethod
    def for_config(cls, config: ExporterConfig) -> Transport:
        """The transport every client of `config` uses: its timeout, TLS and proxy settings."""
        return cls(
            timeout_s=config.timeout_s,
            ca_bundle=config.ca_bundle,
            verify=not config.insecure_skip_tls_verify,
            proxy=config.proxy,
        )

    def post(self, url: str, body: bytes, headers: Mapping[str, str], *,
             timeout_s: float | None = None) -> Response:
        """Send once and read the answer, all within `timeout_s` (at most the transport's own
        timeout; a shutdown deadline may make it shorter).

        Returns the answer (a proxy's own 407 included, also when it refuses a CONNECT tunnel);
        raises TransportError when no HTTP answer came back in time.
        """
        proxy = select_proxy(self._proxy, url)
        pool = self._direct if proxy is None else self._via[proxy.reveal()]
        limit = self._timeout_s if timeout_s is None else max(min(timeout_s, self._timeout_s),
                                                               _MIN_ATTEMPT_S)
        attempt = _Attempt(time.monotonic() + limit)
        _current.attempt = attempt
        _WATCHDOG.arm(attempt)
        try:
            response = self._send(pool, url, body, headers, attempt)
        except TransportError:
            if _end(attempt):
                raise self._timed_out() from None
            raise
        except BaseException:
            _end(attempt)
            raise
        if _end(attempt):  # the answer raced the deadline: it may be cut short
            raise self._timed_out()
        return response

    def _send(
        self,
        pool: urllib3.PoolManager,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        attempt: _Attempt,
    ) -> Response:
        left = max(attempt.deadline - time.monotonic(), 0.001)
        try:
            with warnings.catch_warnings():
                if not self._verify:  # warned once, loudly, at construction
                    warnings.simplefilter("ignore", InsecureRequestWarning)
                answer = pool.request(
                    "POST",
                    url,
                    body=body,
                    headers={"User-Agent": USER_AGENT, **headers},
                    timeout=urllib3.Timeout(connect=left, read=left),
                    retries=False,
                    redirect=False,
                    preload_content=False,
                    decode_content=False,
                )
            complete = False
            try:
                data, complete = _read_bounded(answer, self._max_body)
            finally:
                if not complete:
                    answer.close()  # unread bytes or a broken read: this connection is done
                answer.release_conn()
        except SSLError as exc:
            raise TransportError("tls", _reason(exc)) from None
        except ProxyError as exc:
            refused = _tunnel_refusal(exc)
            if refused is not None and refused[0] == 407:
                return Response(407, {}, f"the proxy refused the tunnel: {refused[1]}".encode())
            if refused is not None:
                raise TransportError(
                    "connect", f"the proxy refused the tunnel: {refused[0]} {refused[1]}"
                ) from None
            raise TransportError("connect", f"proxy: {_reason(exc)}") from None
        except (ConnectTimeoutError, NewConnectionError) as exc:
            raise TransportError("connect", _reason(exc)) from None
        except ReadTimeoutError as exc:
            raise TransportError("timeout", _reason(exc)) from None
        except ProtocolError as exc:
            raise TransportError("reset", _reason(exc)) from None
        except HTTPError as exc:
            raise TransportError("protocol", _reason(exc)) from None
        except OSError as exc:  # a socket the watchdog shut down, at an unguarded moment
            raise TransportError("reset", _reason(exc)) from None
        headers_out = {name.lower(): value for name, value in answer.headers.items()}
        if not complete:
            _log.debug("dt_exporter: kept the first %d bytes of a longer answer", len(data))
        return Response(answer.status, headers_out, _decoded(data, headers_out, self._max_body))

    def _timed_out(self) -> TransportError:
        return TransportError(
            "timeout", f"no complete answer within {self._timeout_s:g} s (DT_EXPORTER_TIMEOUT)"
        )

    def close(self) -> None:
        self._direct.clear()
        for manager in self._via.values():
            manager.clear()


def _end(attempt: _Attempt) -> bool:
    """Close the attempt; whether its deadline passed first."""
    _current.attempt = None
    return attempt.finish()


def _read_bounded(answer: BaseHTTPResponse, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of the body, and whether that was all of it."""
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = answer.read(min(_CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)[:limit], False


def _decoded(data: bytes, headers: Mapping[str, str], limit: int) -> bytes:
    """A gzip/deflate body we did not ask for, inflated to at most `limit` bytes (never a bomb);
    anything else, or what does not inflate, as it came."""
    if headers.get("content-encoding", "").strip().lower() not in ("gzip", "x-gzip", "deflate"):
        return data
    try:
        return zlib.decompressobj(wbits=47).decompress(data, limit)  # 47: gzip or zlib header
    except zlib.error:
        return data


def _tunnel_refusal(exc: ProxyError) -> tuple[int, str] | None:
    """(status, reason) when the proxy answered our CONNECT with something other than 200."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for text in (str(current), *(str(a) for a in getattr(current, "args", ()))):
            match = _TUNNEL_REFUSED.search(text)
            if match:
                return int(match.group(1)), match.group(2).strip(" ')\"")[:100]
        current = current.__cause__ or current.__context__
    return None


def _reason(exc: BaseException) -> str:
    """The innermost cause, without the request (headers never appear in urllib3 messages)."""
    inner = exc.__cause__ or exc.__context__ or exc
    return f"{type(inner).__name__}: {inner}"[:300]


# -- proxies --------------------------------------------------------------------------------------


def select_proxy(proxy: ProxySettings, url: str) -> Secret | None:
    """The proxy URL a request to `url` goes through, or None for a direct connection.

    `proxy.https` serves https:// targets and `proxy.http` http:// ones, unless `NO_PROXY`
    matches the target: `*`; the host itself or a parent domain (`example.com` and
    `.example.com` both match `api.example.com`, never `badexample.com`); an IP address or a
    CIDR range containing the target's IP; any of these with `:port`, matching that port only.
    """
    parts = urlsplit(url)
    chosen = proxy.https if parts.scheme == "https" else proxy.http
    if chosen is None or bypasses_proxy(proxy.no_proxy, url):
        return None
    return chosen


def bypasses_proxy(no_proxy: tuple[str, ...], url: str) -> bool:
    """Whether a `NO_PROXY` entry matches `url`'s host (see `select_proxy`)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in no_proxy:
        if entry == "*":
            return True
        name, entry_port = _split_entry(entry)
        if entry_port is not None and entry_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.lstrip("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _split_entry(entry: str) -> tuple[str, int | None]:
    """`host:port`, `[v6]:port`, `10.0.0.0/8`, `::1` -> (name, port or None)."""
    if entry.startswith("["):
        name, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return name, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        return name, int(port) if port.isdigit() else None
    return entry, None


def describe_proxy(proxy: ProxySettings, url: str) -> str:
    """How a request to `url` travels, for `dt-exporter check`: credentials redacted.

    "direct", "direct (NO_PROXY)", or "via http://user:***@proxy:3128 (HTTPS_PROXY)".
    """
    https = urlsplit(url).scheme == "https"
    chosen, source = (proxy.https, proxy.https_source) if https else (proxy.http, proxy.http_source)
    if chosen is None:
        return "direct"
    if select_proxy(proxy, url) is None:
        return "direct (NO_PROXY)"
    tunnel = ", CONNECT tunnel" if https else ""
    return f"via {redact_url(chosen.reveal())} ({source}{tunnel})"


def _split_proxy_url(url: str) -> tuple[str, dict[str, str]]:
    """The proxy URL without credentials, and the Proxy-Authorization header they make."""
    parts = urlsplit(url)
    address = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
    if "@" not in parts.netloc:
        return address, {}
    userinfo = parts.netloc.rsplit("@", 1)[0]
    user, _, password = userinfo.partition(":")
    credentials = f"{unquote(user)}:{unquote(password)}"
    return address, urllib3.make_headers(proxy_basic_auth=credentials)


# -- the deadline ---------------------------------------------------------------------------------


class _Attempt:
    """One post(): its deadline and the sockets it uses, which the watchdog may shut down.

    Each socket is held through a duplicate descriptor of our own, so shutting it down is safe
    at any moment: the duplicate cannot be closed and reused under us (it is closed by
    `finish`), and it survives the TLS layer taking over the original socket object.
    """

    __slots__ = ("_done", "_expired", "_fds", "_held", "_lock", "deadline")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._lock = threading.Lock()
        self._held: list[socket.socket] = []
        self._fds: set[int] = set()
        self._done = False
        self._expired = False

    @property
    def done(self) -> bool:
        return self._done

    def adopt(self, sock: Any) -> None:
        """Watch `sock` (a socket, an SSL socket, or urllib3's TLS-in-TLS wrapper) too."""
        try:
            fd = sock.fileno()
        except (OSError, AttributeError, ValueError):
            return
        with self._lock:
            if self._done or fd < 0 or fd in self._fds:
                return
            try:
                held = socket.socket(fileno=os.dup(fd))
            except OSError:
                return
            self._fds.add(fd)
            self._held.append(held)
            if self._expired:
                _shut(held)

    def expire(self) -> None:
        """The deadline passed: shut every socket of this attempt down (the blocked read or
        write in the sender thread returns at once)."""
        with self._lock:
            if self._done:
                return
            self._expired = True
            for held in self._held:
                _shut(held)

    def finish(self) -> bool:
        """The attempt is over; returns whether the deadline passed first."""
        with self._lock:
            self._done = True
            for held in self._held:
                held.close()
            self._held.clear()
            return self._expired


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread for the process: expires attempts whose deadline passed."""

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Attempt]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, attempt: _Attempt) -> None:
        with self._cond:
            heapq.heappush(self._heap, (attempt.deadline, next(self._order), attempt))
            if self._thread is None or not self._thread.is_alive():
                thread = threading.Thread(
                    target=self._run, name="dt_exporter-watchdog", daemon=True
                )
                try:
                    thread.start()
                except RuntimeError:
                    # Interpreter exit (3.12+ refuses new threads): the per-operation socket
                    # timeouts, set to the time left, still bound the attempt but for a drip.
                    self._thread = None
                    return
                self._thread = thread
            elif self._heap[0][2] is attempt:
                self._cond.notify()

    def _run(self) -> None:
        cond = self._cond
        while True:
            due: list[_Attempt] = []
            with cond:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].done or self._heap[0][0] <= now):
                    attempt = heapq.heappop(self._heap)[2]
                    if not attempt.done:
                        due.append(attempt)
                if not due:
                    cond.wait(self._heap[0][0] - now if self._heap else None)
            for attempt in due:
                attempt.expire()


_WATCHDOG: Final = _Watchdog()


class _Current(threading.local):
    attempt: _Attempt | None = None


_current = _Current()


def _adopt(sock: Any) -> None:
    attempt = _current.attempt
    if attempt is not None and sock is not None:
        attempt.adopt(sock)


class _WatchedHTTPConnection(HTTPConnection):
    """Hands each socket it opens or reuses to the sender thread's current attempt."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _adopt(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _adopt(self.sock)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    """As `_WatchedHTTPConnection`, for https:// (and the CONNECT tunnel before TLS): its
    methods come first in the MRO and hand over to HTTPSConnection's."""


# urllib3 names the connection class in its messages ("HTTPConnection(host=..., port=...)"):
# keep those messages as they were.
_WatchedHTTPConnection.__name__ = "HTTPConnection"
_WatchedHTTPSConnection.__name__ = "HTTPSConnection"


class _WatchedPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedTLSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_Manager = TypeVar("_Manager", bound=urllib3.PoolManager)


def _watched(manager: _Manager) -> _Manager:
    """`manager` with pools whose connections hand their sockets to the current attempt."""
    manager.pool_classes_by_scheme = {"http": _WatchedPool, "https": _WatchedTLSPool}
    return manager


# -- our own logs ---------------------------------------------------------------------------------


class _OwnThreadFilter(logging.Filter):
    """Drops urllib3's debug lines about our own sends, so that with an OTel logging handler on
    the root logger they cannot turn into log records that we would export again."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName or "").startswith(SENDER_THREAD_PREFIX)


_FILTER = _OwnThreadFilter()
_filter_lock = threading.Lock()


def _quiet_own_urllib3_logs() -> None:
    with _filter_lock:
        for name in _URLLIB3_LOGGERS:
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)
