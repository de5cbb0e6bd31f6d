"""The pieces of a front end, public on purpose: batch records, submit, read the verdict.

The log exporter, the events clients and `dt-exporter send` are all built from these:

    route   = pipeline.log_route(config)            # which ingest API, and its body codecs
    batcher = pipeline.LogBatcher(config, route.name)
    channel = pipeline.Channel.for_config(config, [route])
    tickets = channel.submit(batcher.records(records, time.time_ns()))
    result  = tickets[0].wait(10.0)                 # BodyResult: delivered, dropped, status
    channel.shutdown(5.0)

`send`'s line reader (`read_chunks`: JSON Lines, a JSON array or text, in chunks) is here too.

A `Channel` owns its queue, spool, sender thread, retry loop and accounting; `stats()`,
`flush()` and `shutdown()` live there. Use it when you write a front end of your own (a
different input, a different producer policy); applications want `DynatraceLogExporter`,
`setup_dynatrace()` or the events clients instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from dt_exporter import _enrichment, _routes
from dt_exporter._batching import Encoded, LogBatcher
from dt_exporter._channel import BodyResult, Channel, Clock, ShutdownReport, Ticket
from dt_exporter._payload import Batch, Body
from dt_exporter._responses import server_message
from dt_exporter._retry import PERMANENT_MEANING
from dt_exporter._routes import Route
from dt_exporter._routes import events as events_route
from dt_exporter._routes import logs as log_route
from dt_exporter._routes import security as security_route
from dt_exporter._transport import Response, Transport, describe_proxy
from dt_exporter.config import ExporterConfig
from dt_exporter.errors import TransportError
from dt_exporter.lines import FORMATS, ByteSource, Chunk, InputFormat, read_chunks

#: Sent only if a server refuses the empty array with 400 (the emulator and, as far as we know,
#: Dynatrace accept it with 204).
FALLBACK_PROBE: bytes = b'[{"content":"dt-exporter check"}]'


@dataclass(frozen=True, slots=True)
class ProbeAnswer:
    """What one harmless request to a route said: an HTTP `response`, or the `error` that kept
    one from coming; `fallback_used` when the empty body was refused and one record was sent."""

    route: Route
    response: Response | None
    error: TransportError | None
    elapsed_s: float
    fallback_used: bool = False


def send_probe(config: ExporterConfig, route: Route | None = None) -> ProbeAnswer:
    """Send `route`'s probe (default: the log route's; it ingests nothing) once, with the
    configuration's TLS, proxy and timeout, no retries and no redirects."""
    route = route or _routes.logs(config)
    headers = {"Content-Type": route.content_type}
    if route.authorization:
        headers["Authorization"] = route.authorization
    transport = Transport.for_config(config)
    started = time.monotonic()
    try:
        response = transport.post(route.url, route.probe, headers)
        fallback = response.status == 400 and route.content_type == _routes.JSON
        if fallback:
            response = transport.post(route.url, FALLBACK_PROBE, headers)
        return ProbeAnswer(route, response, None, time.monotonic() - started, fallback)
    except TransportError as error:
        return ProbeAnswer(route, None, error, time.monotonic() - started)
    finally:
        transport.close()


def enrichment() -> _enrichment.Enrichment:
    """What this process's records are enriched with: Dynatrace's enrichment files found
    (`.sources`: level, path, attributes), the merged `.attributes`, and the `.problems` of
    files that were skipped (`dt-exporter check` prints it)."""
    return _enrichment.default_reader().read()


def meaning(status: int) -> str:
    """What a permanent HTTP status means for an ingest API ("" when it has no entry)."""
    return PERMANENT_MEANING.get(status, "")

__all__ = [
    "FALLBACK_PROBE",
    "FORMATS",
    "Batch",
    "Body",
    "BodyResult",
    "ByteSource",
    "Channel",
    "Chunk",
    "Clock",
    "Encoded",
    "InputFormat",
    "LogBatcher",
    "ProbeAnswer",
    "Response",
    "Route",
    "ShutdownReport",
    "Ticket",
    "describe_proxy",
    "enrichment",
    "events_route",
    "log_route",
    "meaning",
    "read_chunks",
    "security_route",
    "send_probe",
    "server_message",
]
