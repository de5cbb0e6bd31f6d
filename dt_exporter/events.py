"""Dynatrace events: the Events API v2 and OpenPipeline custom security events clients.

Events take the logs' road from `payload` down: a finished body goes to a `Sender` with its own
`Route`, and the one retry loop delivers it, backs off, and accounts for it in `stats()`.

`EventsClient` -> `POST /api/v2/events/ingest` (OneAgent: `/v2/events/ingest`, no token), scope
`events.ingest`. One event per request: the API documents one `EventIngest` object per body.
A 201 answer lists a status per event report; an event none of whose reports is `OK` counts as
`rejected_by_server`. Bodies are not compressed unless `DT_EXPORTER_EVENTS_COMPRESSION=gzip`:
whether this endpoint takes gzip is not documented (reference section 5), and an event is small.

`SecurityEventsClient(endpoint_name)` -> `POST /platform/ingest/custom/security.events/{name}`,
scope `openpipeline.events_security.custom`, 202 = delivered. Many events per request (a JSON
array, within `DT_EXPORTER_MAX_REQUEST_BYTES`, under OpenPipeline's 10 MB), gzipped as
`DT_EXPORTER_COMPRESSION` says. Where the new path answers 404 the sender switches, once and for
good, to the legacy `/platform/ingest/custom/events.security/{name}` and logs that it did.

Both clients: `send()` queues and returns at once with a `SendReceipt` (what was queued, what
was refused and why); nothing they do raises into the application after construction.
`send_now()` blocks until the answer and returns an `EventResult`. No disk spool: a spool
directory holds one sender's bodies, and `DT_EXPORTER_SPOOL_DIR` belongs to the log exporter.

`event_routing.EventRoutingExporter` sends OpenTelemetry event records here through these
clients.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from dt_exporter import payload, responses
from dt_exporter.config import Compression, ExporterConfig, read_env
from dt_exporter.delivery import Route, Sender, register_fork_hook
from dt_exporter.errors import ConfigError, TransportError
from dt_exporter.event_model import (
    Event,
    check_endpoint_name,
    fit,
    validate,
)
from dt_exporter.limits import EVENTS_MAX_REQUEST_BYTES
from dt_exporter.mapping import JsonObject
from dt_exporter.payload import Body, Encoding
from dt_exporter.retry import PERMANENT_MEANING, RETRYABLE_STATUS
from dt_exporter.stats import Accounting, DeliveryStats
from dt_exporter.text import bytes_to_text, describe, float_to_json, json_dumps
from dt_exporter.transport import Response, Transport

_log = logging.getLogger(__name__)

EVENTS_SCOPE: Final = "events.ingest"
SECURITY_SCOPE: Final = "openpipeline.events_security.custom"
EVENTS_COMPRESSION_ENV_VAR: Final = "DT_EXPORTER_EVENTS_COMPRESSION"
_JSON: Final = "application/json; charset=utf-8"
_POLL_S: Final = 0.05
_MAX_DEPTH: Final = 32


@dataclass(frozen=True, slots=True)
class EventSettings:
    """What the events clients read beyond `ExporterConfig`: `events_compression`
    (`DT_EXPORTER_EVENTS_COMPRESSION`, default `none`)."""

    compression: Compression = "none"

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, compression: str | None = None
    ) -> EventSettings:
        raw = compression if compression is not None else read_env(EVENTS_COMPRESSION_ENV_VAR, env)
        if raw is None:
            return cls()
        value = str(raw).strip().lower()
        if value == "gzip":
            return cls("gzip")
        if value == "none":
            return cls("none")
        raise ConfigError(EVENTS_COMPRESSION_ENV_VAR, "expected gzip or none")


@dataclass(frozen=True, slots=True)
class SendReceipt:
    """What `send()` did: how many events it queued, and which it refused and why.

    `dropped` counts refusals by reason (`invalid_event`, `record_too_large`,
    `already_shutdown`, `internal_error`); `problems` says what was wrong, one line per event.
    `truncated` counts what `fit` cut so the rest could go.
    """

    queued: int
    dropped: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    problems: tuple[str, ...] = ()
    truncated: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "dropped", MappingProxyType(dict(self.dropped)))
        object.__setattr__(self, "truncated", MappingProxyType(dict(self.truncated)))

    @property
    def ok(self) -> bool:
        """True when every event was queued."""
        return not self.dropped


Outcome = Literal["delivered", "rejected", "undelivered"]


@dataclass(frozen=True, slots=True)
class EventResult:
    """The answer to `send_now()`.

    `rejected`: Dynatrace (or the client, before sending) refused it; sending again will not
    help. `undelivered`: no final answer in time (still queued, retried until `shutdown`) or the
    retries ran out. `reason` never contains the token.
    """

    outcome: Outcome
    reason: str = ""
    http_status: int | None = None
    correlation_ids: tuple[str, ...] = ()
    truncated: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "truncated", MappingProxyType(dict(self.truncated)))

    @property
    def delivered(self) -> bool:
        return self.outcome == "delivered"


# -- watching the attempts of one body (for send_now) ------------------------------------------


@dataclass(eq=False)
class _Watch:
    data: bytes
    done: threading.Event = field(default_factory=threading.Event)
    attempts: int = 0
    status: int | None = None
    response: bytes = b""
    error: str = ""

    @property
    def last(self) -> str:
        if self.status is not None:
            return f"HTTP {self.status}"
        return self.error or "no answer"


class _AttemptLog:
    """Sees every attempt the sender makes, and marks a watched body's final answer: the
    sender keeps its verdicts to itself, and `send_now` needs the status and correlation ids."""

    def __init__(self, route: Route) -> None:
        self._route = route
        self._lock = threading.Lock()
        self._watches: dict[int, _Watch] = {}

    def after_fork_in_child(self) -> None:
        """The parent's waiters are not ours; a lock held at fork time would never be freed."""
        self._lock = threading.Lock()
        self._watches = {}

    def watch(self, data: bytes) -> _Watch:
        watch = _Watch(data)
        with self._lock:
            self._watches[id(data)] = watch
        return watch

    def forget(self, watch: _Watch) -> None:
        with self._lock:
            if self._watches.get(id(watch.data)) is watch:
                del self._watches[id(watch.data)]

    def observe(self, url: str, data: bytes, response: Response | None, error: str) -> None:
        with self._lock:
            watch = self._watches.get(id(data))
        if watch is None or watch.data is not data:
            return
        watch.attempts += 1
        if response is None:
            watch.status, watch.response, watch.error = None, b"", error
            return
        watch.status, watch.response, watch.error = response.status, response.body, ""
        if self._final(url, response.status):
            watch.done.set()

    def _final(self, url: str, status: int) -> bool:
        """Mirrors the sender: retryable answers and a first 404 with a fallback are not."""
        if status in RETRYABLE_STATUS:
            return False
        fallback = self._route.fallback_url
        return not (status == 404 and fallback is not None and url != fallback)


class _ObservedTransport(Transport):
    def __init__(self, attempts: _AttemptLog, **options: Any) -> None:
        super().__init__(**options)
        self._attempts = attempts

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Response:
        try:
            response = super().post(url, body, headers)
        except TransportError as exc:
            self._attempts.observe(url, body, None, str(exc))
            raise
        self._attempts.observe(url, body, response, "")
        return response


# -- the clients --------------------------------------------------------------------------------


class _IngestClient:
    """A `Sender` with one route, its accounting, and the blocking `send_now` machinery."""

    def __init__(self, config: ExporterConfig, route: Route, encoding: Encoding) -> None:
        self._config = config
        self._route = route
        self._encoding: Encoding = encoding
        self._accounting = Accounting()
        self._lock = threading.Lock()
        self._shut_down = False
        self._attempts = _AttemptLog(route)
        attempts = self._attempts
        self._sender = Sender.for_config(
            config, route, self._accounting,
            new_transport=lambda: _ObservedTransport(
                attempts, timeout_s=config.timeout_s, ca_bundle=config.ca_bundle,
                verify=not config.insecure_skip_tls_verify),
        )
        register_fork_hook(self)

    def after_fork_in_child(self) -> None:
        """The sender resets itself; our own locks must not stay held by a parent's thread."""
        self._lock = threading.Lock()
        self._attempts.after_fork_in_child()

    @property
    def config(self) -> ExporterConfig:
        return self._config

    @property
    def url(self) -> str:
        """Where bodies go (the legacy URL is `route.fallback_url`)."""
        return self._route.url

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything queued is delivered or dropped; False if time ran out."""
        return self._sender.flush(timeout_s)

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Refuse new events, deliver what is queued within the deadline (default
        `DT_EXPORTER_SHUTDOWN_TIMEOUT`), drop the rest as `shutdown`. True when all went."""
        with self._lock:
            if self._shut_down:
                return True
            self._shut_down = True
        return self._sender.shutdown(
            self._config.shutdown_timeout_s if timeout_s is None else timeout_s
        )

    def stats(self) -> DeliveryStats:
        """A consistent snapshot: received = delivered + dropped + queued + in flight."""
        with self._lock, self._sender.transition:
            records, size = self._sender.queue.depth
            return self._accounting.snapshot(records, size)

    def _body(self, data: bytes, records: int) -> Body:
        level = self._config.gzip_level
        return Body(self._route.name, payload.compress(data, self._encoding, level), records,
                    self._encoding)

    def _queue(self, received: int, bodies: Sequence[Body], dropped: Counter[str],
               truncated: Mapping[str, int]) -> bool:
        """Account for `received` items and queue `bodies`; False once shut down."""
        with self._lock:
            self._accounting.receive(received)
            if self._shut_down:
                self._accounting.drop("already_shutdown", received)
                return False
            self._accounting.merge(dropped, Counter(truncated))
            for body in bodies:
                self._sender.submit(body)
        return True

    def _receipt(self, received: int, bodies: Sequence[Body], dropped: Counter[str],
                 problems: list[str], truncated: Mapping[str, int]) -> SendReceipt:
        if not self._queue(received, bodies, dropped, truncated):
            return SendReceipt(0, {"already_shutdown": received}, ("the client is shut down",))
        return SendReceipt(sum(b.records for b in bodies), dropped, tuple(problems), truncated)

    def _count_unsendable(self, reason: str, count: int) -> None:
        with self._lock:
            self._accounting.receive(count)
            self._accounting.drop(reason, count)

    def _send_and_wait(self, body: Body, timeout_s: float,
                       truncated: Mapping[str, int]) -> EventResult:
        watch = self._attempts.watch(body.data)
        try:
            if not self._queue(1, [body], Counter(), truncated):
                return EventResult("rejected", "the client is shut down")
            deadline = time.monotonic() + max(timeout_s, 0.0)
            while not watch.done.is_set():
                if self._idle():  # our body was delivered or dropped
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    return EventResult(
                        "undelivered",
                        f"no final answer within {timeout_s:g} s after {watch.attempts} "
                        f"attempts (last: {watch.last}); still queued",
                        watch.status, truncated=truncated)
                watch.done.wait(min(left, _POLL_S))
        finally:
            self._attempts.forget(watch)
        return self._result(watch, truncated)

    def _idle(self) -> bool:
        """Nothing queued or in flight (the sender answers under its `transition` lock, so a
        body moving from the queue to the wire is never missed)."""
        return self._sender.flush(0)

    def _result(self, watch: _Watch, truncated: Mapping[str, int]) -> EventResult:
        status = watch.status
        if not watch.done.is_set() or status is None:
            if watch.attempts == 0:
                return EventResult("undelivered", "dropped before it was sent (see stats())",
                                   truncated=truncated)
            return EventResult("undelivered", f"gave up after {watch.attempts} attempts "
                               f"(last: {watch.last})", status, truncated=truncated)
        if 200 <= status < 300:
            ids, statuses = responses.ingest_results(watch.response)
            if statuses and "OK" not in statuses:
                return EventResult("rejected", "Dynatrace refused the event: "
                                   + ", ".join(sorted(set(statuses))), status, tuple(ids),
                                   truncated)
            return EventResult("delivered", "", status, tuple(ids), truncated)
        if status == 413:
            return EventResult("rejected", "HTTP 413: too large for the endpoint", status,
                               truncated=truncated)
        meaning = PERMANENT_MEANING.get(status, "unexpected answer")
        if status in (401, 403):
            meaning += f" (this endpoint needs scope {self._route.scope})"
        detail = responses.server_message(watch.response)
        return EventResult("rejected", f"HTTP {status}: {meaning}"
                           + (f" — {detail}" if detail else ""), status, truncated=truncated)


class EventsClient(_IngestClient):
    """Sends events to the Events API v2. `EventsClient()` reads `DT_ENDPOINT`, `DT_API_TOKEN`
    and the other `DT_EXPORTER_*` settings; keyword arguments (the `ExporterConfig` setting
    names, plus `events_compression`) override them. Bad configuration raises `ConfigError`.
    """

    def __init__(self, config: ExporterConfig | None = None, **settings: Any) -> None:
        events = EventSettings.from_env(compression=settings.pop("events_compression", None))
        cfg = resolve_config(config, settings)
        if events.compression == "gzip" and cfg.endpoint.is_oneagent:
            raise ConfigError(EVENTS_COMPRESSION_ENV_VAR,
                              "the OneAgent local endpoint refuses Content-Encoding")
        route = Route(
            name="events", url=cfg.endpoint.events_url, content_type=_JSON, scope=EVENTS_SCOPE,
            split=payload.split_json_array, count=payload.count_json_array,
            read_rejections=responses.one_event_rejections, authorization=cfg.authorization,
        )
        super().__init__(cfg, route, "gzip" if events.compression == "gzip" else "identity")

    def send(self, events: Event | Iterable[Event]) -> SendReceipt:
        """Queue one event or many (one request each) and return at once. Never raises."""
        try:
            items: list[object] = [events] if isinstance(events, Event) else list(events)
        except Exception:
            self._count_unsendable("invalid_event", 1)
            return SendReceipt(0, {"invalid_event": 1},
                               ("send() takes an Event or an iterable of Events",))
        try:
            bodies, dropped, problems, truncated = self._encode(items)
        except Exception:  # a bug must not reach the application
            _log.exception("dt_exporter: could not encode %d events; dropped", len(items))
            self._count_unsendable("internal_error", len(items))
            return SendReceipt(0, {"internal_error": len(items)},
                               ("internal error while encoding (logged)",))
        return self._receipt(len(items), bodies, dropped, problems, truncated)

    def send_now(self, event: Event, timeout_s: float = 10.0) -> EventResult:
        """Send one event and wait (at most `timeout_s`) for Dynatrace's answer."""
        bodies, dropped, problems, truncated = self._encode([event], labelled=False)
        if not bodies:
            self._count_unsendable(next(iter(dropped), "invalid_event"), 1)
            return EventResult("rejected", "; ".join(problems), truncated=truncated)
        return self._send_and_wait(bodies[0], timeout_s, truncated)

    def _encode(
        self, items: Sequence[object], *, labelled: bool = True
    ) -> tuple[list[Body], Counter[str], list[str], Counter[str]]:
        bodies: list[Body] = []
        dropped: Counter[str] = Counter()
        truncated: Counter[str] = Counter()
        problems: list[str] = []
        for index, item in enumerate(items):
            if not isinstance(item, Event):
                dropped["invalid_event"] += 1
                problems.append(f"event {index}: not an Event but {type(item).__name__}")
                continue
            label = f"event {index} ({item.title[:60]!r}): " if labelled else ""
            fitted, changes = fit(item)
            wrong = validate(fitted)
            if wrong:
                dropped["invalid_event"] += 1
                problems.append(label + "; ".join(wrong))
                continue
            data, scrubbed = json_dumps(fitted.to_json())
            if len(data) > EVENTS_MAX_REQUEST_BYTES:
                dropped["record_too_large"] += 1
                problems.append(f"{label}{len(data)} bytes, over the API's 1 MB limit")
                continue
            truncated.update(changes)
            if scrubbed:
                truncated["invalid_unicode"] += 1
            bodies.append(self._body(data, 1))
        return bodies, dropped, problems, truncated

    def __repr__(self) -> str:
        return f"EventsClient({self.url!r})"


class SecurityEventsClient(_IngestClient):
    """Sends custom security events to an OpenPipeline ingest endpoint (`endpoint_name`).

    Any JSON objects (mappings) go: OpenPipeline's processing for the endpoint shapes them.
    Values that are not JSON (datetimes, bytes, sets, other objects) become ISO text, base64,
    lists and `str()`. The OneAgent local endpoint has no security-events API: `ConfigError`.
    """

    def __init__(self, endpoint_name: str, config: ExporterConfig | None = None,
                 **settings: Any) -> None:
        name = check_endpoint_name(endpoint_name)
        cfg = resolve_config(config, settings)
        if cfg.endpoint.is_oneagent:
            raise ConfigError(
                "DT_ENDPOINT", "the OneAgent local endpoint has no security-events API; point "
                "DT_ENDPOINT at the environment (SaaS, Managed or an ActiveGate)")
        route = Route(
            name="security", url=cfg.endpoint.security_events_url(name), content_type=_JSON,
            scope=SECURITY_SCOPE, split=payload.split_json_array,
            count=payload.count_json_array, read_rejections=responses.nothing_rejected,
            authorization=cfg.authorization,
            fallback_url=cfg.endpoint.security_events_url(name, legacy=True),
        )
        super().__init__(cfg, route, "gzip" if cfg.compression == "gzip" else "identity")
        self.endpoint_name = name

    def send(self, events: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> SendReceipt:
        """Queue one security event or many (batched) and return at once. Never raises."""
        try:
            items = [events] if isinstance(events, Mapping) else list(events)
            return self._send_objects(items, Counter())
        except Exception:
            _log.exception("dt_exporter: could not encode security events; dropped")
            self._count_unsendable("internal_error", 1)
            return SendReceipt(0, {"internal_error": 1},
                               ("internal error while encoding (logged)",))

    def send_now(self, event: Mapping[str, Any], timeout_s: float = 10.0) -> EventResult:
        """Send one security event and wait (at most `timeout_s`) for the answer."""
        bodies, dropped, problems, truncated = self._encode([event], Counter())
        if not bodies:
            reason = next(iter(dropped), "invalid_event")
            self._count_unsendable(reason, 1)
            return EventResult("rejected", "; ".join(problems) or reason, truncated=truncated)
        return self._send_and_wait(bodies[0], timeout_s, truncated)

    def _send_objects(self, items: Sequence[object], truncated: Counter[str]) -> SendReceipt:
        bodies, dropped, problems, truncated = self._encode(items, truncated)
        return self._receipt(len(items), bodies, dropped, problems, truncated)

    def _encode(
        self, items: Sequence[object], truncated: Counter[str]
    ) -> tuple[list[Body], Counter[str], list[str], Counter[str]]:
        dropped: Counter[str] = Counter()
        problems: list[str] = []
        objects: list[JsonObject] = []
        for index, item in enumerate(items):
            if isinstance(item, Mapping):
                objects.append({_key(k): json_safe(v, 1) for k, v in item.items()})
            else:
                dropped["invalid_event"] += 1
                problems.append(f"event {index}: not a JSON object but {type(item).__name__}")
        cfg = self._config
        arrays = payload.json_arrays(
            objects, max_bytes=cfg.max_request_bytes, max_records=cfg.max_records_per_request,
            truncations=truncated, dropped=dropped,
        )
        if dropped["record_too_large"]:
            problems.append(f"{dropped['record_too_large']} events over "
                            f"{cfg.max_request_bytes} bytes each")
        return [self._body(data, count) for data, count in arrays], dropped, problems, truncated

    def __repr__(self) -> str:
        return f"SecurityEventsClient({self.url!r})"


def resolve_config(config: ExporterConfig | None, settings: Mapping[str, Any]) -> ExporterConfig:
    """`config` as given, else one from the environment and `settings` (not both)."""
    if config is None:
        return ExporterConfig.from_env(**settings)
    if settings:
        raise ConfigError(", ".join(sorted(settings)), "pass either config= or settings, not both")
    return config


def _key(key: object) -> str:
    return key if isinstance(key, str) else describe(key)


def json_safe(value: object, depth: int) -> Any:
    """Any value as JSON types only: never raises; cycles and depth end as text."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, float):
        return float_to_json(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes_to_text(value)
    if depth > _MAX_DEPTH:
        return describe(value)
    if isinstance(value, Mapping):
        return {_key(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(describe(v) for v in value)
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        try:
            return str(isoformat())
        except Exception:  # noqa: S110 - fall through to describe()
            pass
    return describe(value)
