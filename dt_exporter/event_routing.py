"""The OpenTelemetry route for events: `EventRoutingExporter` wraps a `LogRecordExporter` and
sends records whose `event_name` matches a rule of `DT_EXPORTER_EVENT_ROUTES` to the Events API
or an OpenPipeline security-events endpoint (through the clients of `events`); every other record
stays a log. The mapping:

| Events API field | from the OpenTelemetry record                                        |
|------------------|----------------------------------------------------------------------|
| `eventType`      | the rule (`deployment=events:CUSTOM_DEPLOYMENT`)                      |
| `title`          | attribute `event.title`, else the event name                          |
| `startTime`      | `timestamp` (else `observed_timestamp`), in ms                        |
| `timeout`        | attribute `event.timeout_minutes` (an int)                            |
| `entitySelector` | attribute `event.entity_selector`                                     |
| `properties`     | `event.name`; `content` (the body); every other attribute, nested     |
|                  | mappings as dotted keys, lists as JSON text, None left out; `trace_id`,|
|                  | `span_id`; `service.name`/`.namespace`/`.version` and                  |
|                  | `deployment.environment(.name)` from the resource. Then `fit`: values  |
|                  | as strings, cut to 4,096 characters, keys to 100, at most 100, refused |
|                  | `dt.*` keys dropped.                                                   |

A security rule (`finding.*=security:my-scanner`) sends the record as one flat JSON object,
exactly as log ingest would get it: resource and scope attributes, `event.name`, attributes as
dotted keys, `trace_id`/`span_id`, `content`, `timestamp` (ms) and `loglevel`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from dt_exporter import _enrichment, _forks
from dt_exporter._stats import DeliveryStats
from dt_exporter.config import ExporterConfig
from dt_exporter.errors import ConfigError
from dt_exporter.event_model import (
    Event,
    EventRoutes,
    event_from_record,
    security_event_from_record,
)
from dt_exporter.events import EventsClient, SecurityEventsClient, resolve_config
from dt_exporter.exporter import DynatraceLogExporter
from dt_exporter.mapping import JsonObject, RecordMapper

_log = logging.getLogger(__name__)


class EventRoutingExporter(LogRecordExporter):
    """Sends OpenTelemetry event records (`event_name` set and matched by a rule) to the Events
    API or a security-events endpoint, and every other record to `log_exporter`.

    `routes`: an `EventRoutes`, a `{pattern: destination}` mapping or the string form; default
    `DT_EXPORTER_EVENT_ROUTES`. The clients use `config` (default: the log exporter's, else the
    environment with `settings`). `export()` never raises.
    """

    def __init__(
        self,
        log_exporter: LogRecordExporter,
        routes: EventRoutes | str | Mapping[str, str] | None = None,
        *,
        config: ExporterConfig | None = None,
        **settings: Any,
    ) -> None:
        self._logs = log_exporter
        self._routes = routes if isinstance(routes, EventRoutes) else EventRoutes.from_env(
            routes=routes)
        self._lock = threading.Lock()
        _forks.register(self)
        self._events: EventsClient | None = None
        self._security: dict[str, SecurityEventsClient] = {}
        #: one mapper per security endpoint, so each client is charged its own truncations
        self._mappers: dict[str, tuple[RecordMapper, Counter[str]]] = {}
        if not self._routes.routes:
            return
        compression = settings.pop("events_compression", None)
        if config is None and not settings and isinstance(log_exporter, DynatraceLogExporter):
            config = log_exporter.config
        cfg = resolve_config(config, settings)
        if compression is not None:  # a keyword for the events clients only
            cfg = _with_events_compression(cfg, compression)
        for route in self._routes.routes:
            if route.target == "events" and self._events is None:
                self._events = EventsClient(cfg)
            elif route.target == "security" and route.endpoint_name not in self._security:
                self._security[route.endpoint_name] = SecurityEventsClient(
                    route.endpoint_name, cfg)
                cut: Counter[str] = Counter()
                # Like log records, security events carry the enrichment under their resource.
                enrichment = _enrichment.attributes_or_none(strict=False)
                self._mappers[route.endpoint_name] = (
                    RecordMapper(cfg.limits, cut, enrichment), cut)

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    @property
    def routes(self) -> EventRoutes:
        return self._routes

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        try:
            return self._export(batch)
        except Exception:  # never into the application
            _log.exception("dt_exporter: unexpected error in EventRoutingExporter.export()")
            return LogRecordExportResult.FAILURE

    def _export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        if not self._routes.routes:
            return self._logs.export(batch)
        logs: list[ReadableLogRecord] = []
        events: list[Event] = []
        security: dict[str, list[JsonObject]] = {name: [] for name in self._security}
        unmappable: Counter[str] = Counter()
        with self._lock:  # the mappers are not thread-safe
            for record in batch:
                route = self._routes.route_for(record.log_record.event_name)
                if route is None:
                    logs.append(record)
                    continue
                try:
                    if route.target == "events":
                        events.append(event_from_record(record, route.event_type))
                    else:
                        mapper, _ = self._mappers[route.endpoint_name]
                        security[route.endpoint_name].append(
                            security_event_from_record(record, mapper))
                except Exception:
                    _log.exception("dt_exporter: could not map an event record; dropped")
                    unmappable[route.destination] += 1
            truncated = {name: _take(cut) for name, (_, cut) in self._mappers.items()}
        if self._events is not None:
            if events:
                self._events.send(events)
            lost = sum(n for dest, n in unmappable.items() if dest.startswith("events:"))
            if lost:
                self._events.record_unsendable("unmappable", lost)
        for name, client in self._security.items():
            if security[name]:
                client.send(security[name], truncated=truncated[name])
            client.record_unsendable("unmappable", unmappable[f"security:{name}"])
        return self._logs.export(logs) if logs else LogRecordExportResult.SUCCESS

    def _clients(self) -> list[EventsClient | SecurityEventsClient]:
        clients: list[EventsClient | SecurityEventsClient] = (
            [] if self._events is None else [self._events])
        return [*clients, *self._security.values()]

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        flushed = all([client.flush(_left(deadline)) for client in self._clients()])
        left_ms = int(_left(deadline) * 1000)
        return self._logs.force_flush(left_ms) and flushed

    def shutdown(self, timeout_millis: int | None = None) -> None:
        """Shut the event clients down, then the log exporter, within one deadline."""
        clients = self._clients()
        if timeout_millis is None:
            timeout_s = max((c.config.shutdown_timeout_s for c in clients), default=5.0)
        else:
            timeout_s = timeout_millis / 1000
        deadline = time.monotonic() + timeout_s
        for client in clients:
            client.shutdown(_left(deadline))
        if isinstance(self._logs, DynatraceLogExporter):
            self._logs.shutdown(int(_left(deadline) * 1000))
        else:
            self._logs.shutdown()  # type: ignore[no-untyped-call]  # the SDK leaves it untyped

    def stats(self) -> dict[str, DeliveryStats]:
        """Delivery stats per destination: `logs` (when the log exporter keeps them),
        `events`, `security:<endpoint>`."""
        out: dict[str, DeliveryStats] = {}
        logs_stats = getattr(self._logs, "stats", None)
        if callable(logs_stats):
            out["logs"] = logs_stats()
        if self._events is not None:
            out["events"] = self._events.stats()
        for name, client in self._security.items():
            out[f"security:{name}"] = client.stats()
        return out

    def __repr__(self) -> str:
        return f"EventRoutingExporter({self._logs!r}, routes={str(self._routes)!r})"


def _with_events_compression(cfg: ExporterConfig, raw: object) -> ExporterConfig:
    value = str(raw).strip().lower()
    if value not in ("gzip", "none"):
        raise ConfigError("events_compression", "expected gzip or none")
    if value == "gzip" and cfg.endpoint.is_oneagent:
        raise ConfigError("DT_EXPORTER_EVENTS_COMPRESSION",
                          "the OneAgent local endpoint refuses Content-Encoding")
    return dataclasses.replace(cfg, events_compression="gzip" if value == "gzip" else "none")


def _take(counter: Counter[str]) -> Counter[str]:
    """The counts so far, leaving `counter` empty for the next batch."""
    taken = Counter(counter)
    counter.clear()
    return taken


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0)
