"""`DynatraceEmulator`: the public face of the emulator, and the state it keeps."""

from __future__ import annotations

import ssl
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Literal

from dt_exporter.testing._attributes import DataModel
from dt_exporter.testing._auth import ALL_SCOPES, LOGS_SCOPE, TokenStore, new_token
from dt_exporter.testing._ingest import Outcome, Settings
from dt_exporter.testing._models import (
    ENDPOINT_GROUPS,
    EndpointGroup,
    ReceivedRecord,
    ReceivedRequest,
    Reply,
)
from dt_exporter.testing._server import EmulatorServer

EventKind = Literal["events", "security"]


class DynatraceEmulator:
    """A local Dynatrace: real HTTP on 127.0.0.1 that answers like Dynatrace's ingest APIs.

    Endpoints (also under `/e/{env_id}`; any environment id when `env_id` is None):
    `POST /api/v2/logs/ingest`, `/api/v2/otlp/v1/logs`, `/api/v2/events/ingest`,
    `/platform/ingest/custom/security.events/{endpoint}` and the legacy
    `/platform/ingest/custom/events.security/{endpoint}`, plus OneAgent's local
    `/v2/logs/ingest` and `/v2/events/ingest` (no token; `Content-Encoding` refused with 400).

    Records are interpreted with the flattened data model unless the request asks for
    `structure=raw` (set `default_structure = "raw"` to act like a tenant created after
    February 2026). `clock` (epoch seconds) drives the 24-hour rule and events' time windows.

    Use it as a context manager, or `start()` / `stop()`; after `stop()`, `start()` binds the
    same port again, so a client sees an outage and a recovery.
    """

    def __init__(
        self,
        port: int = 0,
        env_id: str | None = None,
        clock: Callable[[], float] = time.time,
        *,
        token: str | None = None,
        on_record: Callable[[ReceivedRecord], None] | None = None,
        on_event: Callable[[EventKind, dict[str, Any]], None] | None = None,
        max_history: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.env_id = env_id
        self._tokens = TokenStore()
        platform = token is not None and token.startswith("dt0s16.")
        self._token = self._tokens.add(token or new_token(), ALL_SCOPES, platform)
        self._port = port
        self._clock = clock
        #: Serve HTTPS with this server-side context (an ActiveGate with a private CA, say).
        self.ssl_context = ssl_context
        #: Called in the server's thread for every accepted log record / event.
        self.on_record = on_record
        self.on_event = on_event
        self.max_request_bytes = 10_000_000
        self.max_events_request_bytes = 1_000_000  # the general API payload limit
        self.max_records_per_request = 50_000
        self.default_structure: DataModel = "flattened"
        #: Known custom security endpoint names; None accepts any name.
        self.security_endpoints: set[str] | None = None
        self.new_security_path_enabled = True
        self.legacy_security_path_enabled = True
        self._stopping = threading.Event()
        self._changed = threading.Condition()
        self._records: deque[ReceivedRecord] = deque(maxlen=max_history)
        self._requests: deque[ReceivedRequest] = deque(maxlen=max_history)
        self._events: deque[dict[str, Any]] = deque(maxlen=max_history)
        self._security_events: deque[dict[str, Any]] = deque(maxlen=max_history)
        self._record_total = self._request_total = 0
        self._replies: dict[str, deque[Reply]] = {group: deque() for group in ENDPOINT_GROUPS}
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> DynatraceEmulator:
        """Bind 127.0.0.1 and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._stopping.clear()
        server = EmulatorServer(("127.0.0.1", self._port), self)
        if self.ssl_context is not None:
            server.socket = self.ssl_context.wrap_socket(server.socket, server_side=True)
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},  # stop() waits up to one interval
            name=f"dynatrace-emulator:{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (hanging ones included)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections(timeout=2.0)
        thread.join(timeout=2.0)
        self._server = self._thread = None

    def __enter__(self) -> DynatraceEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"<DynatraceEmulator {where}>"

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:41241` (no path)."""
        if self._server is None:
            raise RuntimeError("the emulator is not running; use it as a context manager")
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def token(self) -> str:
        """An access token (`Api-Token`) holding every scope the emulator checks."""
        return self._token

    def mint_token(self, scopes: Iterable[str] = (LOGS_SCOPE,), platform: bool = False) -> str:
        """A new token with exactly these scopes; `platform=True`: a `dt0s16` Bearer token."""
        return self._tokens.add(new_token(platform), scopes, platform)

    # -- what was received ----------------------------------------------------------------

    @property
    def records(self) -> list[ReceivedRecord]:
        """Every accepted log record (JSON, OTLP, OneAgent), in arrival order."""
        with self._changed:
            return list(self._records)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request, whatever the answer."""
        with self._changed:
            return list(self._requests)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Accepted Events API v2 events, as sent."""
        with self._changed:
            return list(self._events)

    @property
    def security_events(self) -> list[dict[str, Any]]:
        """Accepted security events, with `_endpoint` (its name) and `_legacy` (which path)."""
        with self._changed:
            return list(self._security_events)

    def wait_for_records(self, n: int, timeout: float = 5.0) -> list[ReceivedRecord]:
        """Block until at least `n` records arrived; AssertionError after `timeout` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._record_total >= n, timeout):
                raise AssertionError(
                    self._shortfall(f"{n} log records", self._record_total, timeout)
                )
            return list(self._records)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """Block until at least `n` requests arrived; AssertionError after `timeout` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._request_total >= n, timeout):
                raise AssertionError(self._shortfall(f"{n} requests", self._request_total, timeout))
            return list(self._requests)

    def _shortfall(self, wanted: str, got: int, timeout: float) -> str:
        recent = list(self._requests)[-5:]
        lines = [
            f"  {r.method} {r.path} -> {r.status} {r.response_body[:200].decode(errors='replace')}"
            for r in recent
        ]
        seen = "\n".join(lines) if lines else "  (no request at all)"
        return f"expected at least {wanted} within {timeout} s, got {got}; last requests:\n{seen}"

    # -- scripting ------------------------------------------------------------------------

    def enqueue(self, group: EndpointGroup, *replies: Reply) -> None:
        """Script the next answers for `group` ("logs", "otlp", "events", "security"), FIFO."""
        if group not in ENDPOINT_GROUPS:
            raise ValueError(
                f"unknown endpoint group {group!r}; use one of {sorted(ENDPOINT_GROUPS)}"
            )
        if not all(isinstance(reply, Reply) for reply in replies):
            raise TypeError("enqueue() takes Reply objects")
        with self._changed:
            self._replies[group].extend(replies)

    def reset(self) -> None:
        """Forget everything received and every scripted reply."""
        with self._changed:
            for history in (self._records, self._requests, self._events, self._security_events):
                history.clear()
            for replies in self._replies.values():
                replies.clear()
            self._record_total = self._request_total = 0

    # -- called by the server (the `Hub` protocol in _server.py) --------------------------

    def _settings(self) -> Settings:
        known = self.security_endpoints
        return Settings(
            max_request_bytes=self.max_request_bytes,
            max_events_request_bytes=self.max_events_request_bytes,
            max_records_per_request=self.max_records_per_request,
            default_structure=self.default_structure,
            security_endpoints=None if known is None else frozenset(known),
            new_security_path_enabled=self.new_security_path_enabled,
            legacy_security_path_enabled=self.legacy_security_path_enabled,
        )

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _take_reply(self, group: EndpointGroup) -> Reply | None:
        with self._changed:
            replies = self._replies[group]
            return replies.popleft() if replies else None

    def _record_request(self, request: ReceivedRequest) -> None:
        with self._changed:
            self._requests.append(request)
            self._request_total += 1
            self._changed.notify_all()

    def _store(self, outcome: Outcome) -> None:
        if not (outcome.records or outcome.events or outcome.security_events):
            return
        with self._changed:
            self._records.extend(outcome.records)
            self._record_total += len(outcome.records)
            self._events.extend(outcome.events)
            self._security_events.extend(outcome.security_events)
            self._changed.notify_all()
        self._notify(outcome)

    def _notify(self, outcome: Outcome) -> None:
        on_record, on_event = self.on_record, self.on_event
        try:
            if on_record is not None:
                for record in outcome.records:
                    on_record(record)
            if on_event is not None:
                for event in outcome.events:
                    on_event("events", event)
                for event in outcome.security_events:
                    on_event("security", event)
        except Exception:  # a broken callback must not break the emulator
            traceback.print_exc()
