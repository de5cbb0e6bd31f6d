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
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from dt_exporter import _payload as payload
from dt_exporter import _responses as responses
from dt_exporter import _routes
from dt_exporter._channel import BodyResult, Channel, describe_permanent
from dt_exporter._payload import Batch, Body, Encoding
from dt_exporter._routes import Route
from dt_exporter._stats import DeliveryStats
from dt_exporter._text import describe, json_dumps, json_safe
from dt_exporter.config import ExporterConfig
from dt_exporter.errors import ConfigError
from dt_exporter.event_model import (
    Event,
    check_endpoint_name,
    fit,
    validate,
)
from dt_exporter.limits import EVENTS_MAX_REQUEST_BYTES
from dt_exporter.mapping import JsonObject

_log = logging.getLogger(__name__)

EVENTS_SCOPE: Final = _routes.EVENTS_SCOPE
SECURITY_SCOPE: Final = _routes.SECURITY_SCOPE
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


# -- the clients --------------------------------------------------------------------------------


class _IngestClient:
    """A channel with one route: `send` submits and returns, `send_now` waits on the ticket."""

    def __init__(self, config: ExporterConfig, route: Route, encoding: Encoding) -> None:
        self._config = config
        self._route = route
        self._encoding: Encoding = encoding
        self._channel = Channel.for_config(config, [route])

    @property
    def config(self) -> ExporterConfig:
        return self._config

    @property
    def url(self) -> str:
        """Where bodies go (the legacy URL is `route.fallback_url`)."""
        return self._route.url

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything queued is delivered or dropped; False if time ran out."""
        return self._channel.flush(timeout_s)

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Refuse new events, deliver what is queued within the deadline (default
        `DT_EXPORTER_SHUTDOWN_TIMEOUT`), drop the rest as `shutdown`. True when all went."""
        report = self._channel.shutdown(
            self._config.shutdown_timeout_s if timeout_s is None else timeout_s)
        return report.drained

    def stats(self) -> DeliveryStats:
        """A consistent snapshot: received = delivered + dropped + queued + in flight."""
        return self._channel.stats()

    def record_unsendable(self, reason: str, count: int) -> None:
        """Count `count` items a caller could not turn into events (for example OpenTelemetry
        event records that failed to map), so that `stats()` still accounts for them."""
        if count > 0:
            self._channel.submit(Batch.refused(count, reason))

    def _body(self, data: bytes, records: int) -> Body:
        level = self._config.gzip_level
        return Body(self._route.name, payload.compress(data, self._encoding, level), records,
                    self._encoding, raw_size=len(data))

    def _receipt(self, received: int, bodies: Sequence[Body], dropped: Counter[str],
                 problems: list[str], truncated: Mapping[str, int]) -> SendReceipt:
        tickets = self._channel.submit(Batch(received, bodies, dropped, truncated))
        refused = [t.result for t in tickets if t.done() and t.result is not None]
        if refused and all("already_shutdown" in r.dropped for r in refused) and (
                len(refused) == len(tickets)):
            return SendReceipt(0, {"already_shutdown": received}, ("the client is shut down",))
        return SendReceipt(sum(b.records for b in bodies), dropped, tuple(problems), truncated)

    def _send_and_wait(self, body: Body, timeout_s: float,
                       truncated: Mapping[str, int]) -> EventResult:
        (ticket,) = self._channel.submit(Batch(1, [body], {}, truncated))
        result = ticket.wait(max(timeout_s, 0.0))
        if result is None:
            last = f"HTTP {ticket.last_status}" if ticket.last_status else (
                ticket.last_message or "no answer")
            return EventResult(
                "undelivered", f"no final answer within {timeout_s:g} s after "
                f"{ticket.attempts} attempts (last: {last}); still queued",
                ticket.last_status, truncated=truncated)
        return self._result(result, truncated)

    def _result(self, result: BodyResult, truncated: Mapping[str, int]) -> EventResult:
        status = result.status
        if "already_shutdown" in result.dropped:
            return EventResult("rejected", "the client is shut down", truncated=truncated)
        if result.delivered:
            ids, _ = responses.ingest_results(result.response)
            return EventResult("delivered", "", status, tuple(ids), truncated)
        reason = next(iter(result.dropped), "")
        if reason == "rejected_by_server":
            ids, statuses = responses.ingest_results(result.response)
            return EventResult("rejected", "Dynatrace refused the event: "
                               + ", ".join(sorted(set(statuses))), status, tuple(ids),
                               truncated)
        if reason in ("retry_exhausted", "shutdown", "queue_full", "too_old") or status is None:
            last = f"HTTP {status}" if status is not None else (result.message or "no answer")
            if result.attempts == 0:
                return EventResult("undelivered", f"dropped before it was sent ({reason})",
                                   truncated=truncated)
            return EventResult("undelivered", f"gave up after {result.attempts} attempts "
                               f"(last: {last})", status, truncated=truncated)
        if status == 413:
            return EventResult("rejected", "HTTP 413: too large for the endpoint", status,
                               truncated=truncated)
        return EventResult("rejected", "HTTP " + describe_permanent(
            self._route, status, result.response).split(" answered ", 1)[1], status,
            truncated=truncated)


class EventsClient(_IngestClient):
    """Sends events to the Events API v2. `EventsClient()` reads `DT_ENDPOINT`, `DT_API_TOKEN`
    and the other `DT_EXPORTER_*` settings; keyword arguments (the `ExporterConfig` setting
    names, `events_compression` among them) override them. Bad configuration raises
    `ConfigError`. Bodies are gzipped only with `events_compression="gzip"`
    (`DT_EXPORTER_EVENTS_COMPRESSION`): whether the endpoint takes gzip is not documented.
    """

    def __init__(self, config: ExporterConfig | None = None, **settings: Any) -> None:
        cfg = resolve_config(config, settings)
        encoding: Encoding = "gzip" if cfg.events_compression == "gzip" else "identity"
        super().__init__(cfg, _routes.events(cfg), encoding)

    def send(self, events: Event | Iterable[Event]) -> SendReceipt:
        """Queue one event or many (one request each) and return at once. Never raises."""
        try:
            items: list[object] = [events] if isinstance(events, Event) else list(events)
        except Exception:
            self.record_unsendable("invalid_event", 1)
            return SendReceipt(0, {"invalid_event": 1},
                               ("send() takes an Event or an iterable of Events",))
        try:
            bodies, dropped, problems, truncated = self._encode(items)
        except Exception:  # a bug must not reach the application
            _log.exception("dt_exporter: could not encode %d events; dropped", len(items))
            self.record_unsendable("internal_error", len(items))
            return SendReceipt(0, {"internal_error": len(items)},
                               ("internal error while encoding (logged)",))
        return self._receipt(len(items), bodies, dropped, problems, truncated)

    def send_now(self, event: Event, timeout_s: float = 10.0) -> EventResult:
        """Send one event and wait (at most `timeout_s`) for Dynatrace's answer."""
        bodies, dropped, problems, truncated = self._encode([event], labelled=False)
        if not bodies:
            self.record_unsendable(next(iter(dropped), "invalid_event"), 1)
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
        encoding: Encoding = "gzip" if cfg.compression == "gzip" else "identity"
        super().__init__(cfg, _routes.security(cfg, name), encoding)
        self.endpoint_name = name

    def send(self, events: Mapping[str, Any] | Iterable[Mapping[str, Any]], *,
             truncated: Mapping[str, int] | None = None) -> SendReceipt:
        """Queue one security event or many (batched) and return at once. Never raises.
        `truncated`: cuts a caller already made to these events (counted in `stats()`)."""
        try:
            items = [events] if isinstance(events, Mapping) else list(events)
            return self._send_objects(items, Counter(truncated or {}))
        except Exception:
            _log.exception("dt_exporter: could not encode security events; dropped")
            self.record_unsendable("internal_error", 1)
            return SendReceipt(0, {"internal_error": 1},
                               ("internal error while encoding (logged)",))

    def send_now(self, event: Mapping[str, Any], timeout_s: float = 10.0) -> EventResult:
        """Send one security event and wait (at most `timeout_s`) for the answer."""
        bodies, dropped, problems, truncated = self._encode([event], Counter())
        if not bodies:
            reason = next(iter(dropped), "invalid_event")
            self.record_unsendable(reason, 1)
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

