"""The HTTP side: a threaded keep-alive server on loopback, and scripted misbehaviour.

Each connection gets a daemon thread (`ThreadingHTTPServer`). The server tracks its open
connections so that stopping it closes them too: a client's pooled keep-alive connection must
not keep talking to a stopped emulator.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import sys
import threading
import traceback
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import orjson

from dt_exporter.testing._auth import TokenStore, redact
from dt_exporter.testing._bodies import decoded_or_raw
from dt_exporter.testing._ingest import Outcome, Settings, decode_body, handle
from dt_exporter.testing._models import EndpointGroup, Headers, ReceivedRequest, Reply
from dt_exporter.testing._responses import JSON, Answer, error_answer
from dt_exporter.testing._routes import resolve

SERVER_NAME = "dt-exporter-emulator"
ONEAGENT_SERVER_NAME = "EEC"  # what OneAgent's local ingest API sends (reference section 8)
_NO_BODY_STATUSES = frozenset({204, 304})


class Hub(Protocol):
    """What the handler needs from the emulator."""

    env_id: str | None
    _tokens: TokenStore
    _stopping: threading.Event

    def _settings(self) -> Settings: ...
    def _now_ms(self) -> int: ...
    def _take_reply(self, group: EndpointGroup) -> Reply | None: ...
    def _store(self, outcome: Outcome) -> None: ...
    def _record_request(self, request: ReceivedRequest) -> None: ...


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], hub: Hub) -> None:
        self.hub = hub
        self._connections: set[socket.socket] = set()
        self._changed = threading.Condition()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._changed:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        with self._changed:
            self._connections.discard(request)
            self._changed.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away; nothing to report
        super().handle_error(request, client_address)

    def close_connections(self, timeout: float) -> None:
        """Shut every open connection and wait for its handler to finish."""
        with self._changed:
            for connection in list(self._connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._changed.wait_for(lambda: not self._connections, timeout)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm holds the
    # second until the client's delayed ACK (~40 ms per request on a reused connection).
    disable_nagle_algorithm = True
    server: EmulatorServer
    _server_name = SERVER_NAME

    def do_POST(self) -> None:
        self._serve()

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_POST  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests read `requests` instead."""

    def version_string(self) -> str:
        return self._server_name

    def _serve(self) -> None:
        hub = self.server.hub
        url = urlsplit(self.path)
        query = parse_qsl(url.query, keep_blank_values=True)
        try:
            raw = self._read_body()
        except ValueError:
            self.close_connection = True
            self._answer(url.path, query, b"", error_answer(400, "Unreadable request body."))
            return
        route = resolve(url.path, hub.env_id)
        self._server_name = ONEAGENT_SERVER_NAME if route and route.oneagent else SERVER_NAME
        settings = hub._settings()
        if route is None or self.command != "POST":
            if route is None:
                answer = error_answer(404, f"No Dynatrace ingest endpoint at {url.path}")
            else:
                refused = error_answer(405, f"{self.command} is not allowed; use POST.")
                answer = Answer(405, {**refused.headers, "Allow": "POST"}, refused.body)
            encoding = self.headers.get("Content-Encoding")
            body = decoded_or_raw(raw, encoding, settings.max_request_bytes)
            self._answer(url.path, query, body, answer)
            return
        incoming = decode_body(route, self.headers, query, raw, settings)
        reply = hub._take_reply(route.group)
        if reply is not None and (reply.hang or reply.reset):
            self._record(url.path, query, incoming.body, None)
            self._hang() if reply.hang else self._reset()
            return
        outcome = None
        if reply is not None and not 200 <= reply.status < 300:
            answer = scripted(reply)
        else:
            rejected = reply.partial_rejected if reply is not None else None
            try:
                outcome = handle(incoming, settings, hub._tokens, hub._now_ms(), rejected)
            except Exception as error:  # an emulator bug: make it visible to the test
                traceback.print_exc()
                outcome = Outcome(error_answer(500, f"Emulator error: {error!r}"))
            answer = outcome.answer if reply is None else scripted(reply, outcome.answer)
        self._record(url.path, query, incoming.body, answer)
        if outcome is not None:
            hub._store(outcome)  # after the request, so a waiter on records sees both
        if reply is not None and reply.delay and hub._stopping.wait(reply.delay):
            self.close_connection = True  # stopped while delaying: never answer
            return
        self._send(answer)

    def _answer(
        self, path: str, query: Sequence[tuple[str, str]], body: bytes, answer: Answer
    ) -> None:
        self._record(path, query, body, answer)
        self._send(answer)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline(65537).split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(65537).strip():
                    pass  # trailer fields
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(65537)

    def _record(
        self, path: str, query: Sequence[tuple[str, str]], body: bytes, answer: Answer | None
    ) -> None:
        headers = Headers()
        for name, value in self.headers.items():
            if name.lower() == "authorization":
                value = redact(value)
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        shown = {k: "<redacted>" if k.lower() == "api-token" else v for k, v in query}
        request = ReceivedRequest(
            self.command,
            path,
            shown,
            headers,
            body,
            None if answer is None else answer.status,
            b"" if answer is None else answer.body,
        )
        self.server.hub._record_request(request)

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        has_body = answer.status not in _NO_BODY_STATUSES
        if has_body:
            self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if has_body and self.command != "HEAD":
            self.wfile.write(answer.body)

    def _hang(self) -> None:
        """Never answer; return once the client closes or the emulator stops."""
        self.close_connection = True
        stopping = self.server.hub._stopping
        while not stopping.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.1)
            if readable:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        return  # the client closed its end
                except OSError:
                    return
                stopping.wait(0.1)

    def _reset(self) -> None:
        """Close abruptly: SO_LINGER 0 makes the kernel send a TCP RST instead of a FIN."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # detach(): the socketserver must not shut the socket down first (that sends a FIN).
        os.close(self.connection.detach())


def scripted(reply: Reply, normal: Answer | None = None) -> Answer:
    """The answer to a scripted reply; `normal` is normal handling's answer for 2xx replies.

    A 2xx reply cannot make a refused request succeed, and a partial reply answers what normal
    handling made of it; otherwise the reply's status and body win. Its headers are always added.
    """
    headers = dict(reply.headers)
    if normal is not None and (normal.status >= 300 or reply.partial_rejected is not None):
        return Answer(normal.status, {**normal.headers, **headers}, normal.body)
    if isinstance(reply.body, dict):
        return Answer(reply.status, {"Content-Type": JSON, **headers}, orjson.dumps(reply.body))
    if reply.body is not None:
        return Answer(reply.status, headers, reply.body)
    if normal is not None and normal.status == reply.status:
        return Answer(normal.status, {**normal.headers, **headers}, normal.body)
    if reply.status >= 400:
        envelope = error_answer(reply.status, _phrase(reply.status))
        return Answer(envelope.status, {**envelope.headers, **headers}, envelope.body)
    return Answer(reply.status, headers)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Scripted error"
