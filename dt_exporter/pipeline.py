"""The pieces of a front end, public on purpose: batch records, submit, read the verdict.

The log exporter, the events clients and `dt-exporter send` are all built from these:

    route   = pipeline.log_route(config)            # which ingest API, and its body codecs
    batcher = pipeline.LogBatcher(config, route.name)
    channel = pipeline.Channel.for_config(config, [route])
    tickets = channel.submit(batcher.records(records, time.time_ns()))
    result  = tickets[0].wait(10.0)                 # BodyResult: delivered, dropped, status
    channel.shutdown(5.0)

A `Channel` owns its queue, spool, sender thread, retry loop and accounting; `stats()`,
`flush()` and `shutdown()` live there. Use it when you write a front end of your own (a
different input, a different producer policy); applications want `DynatraceLogExporter`,
`setup_dynatrace()` or the events clients instead.
"""

from __future__ import annotations

from dt_exporter._batching import Encoded, LogBatcher
from dt_exporter._channel import BodyResult, Channel, Clock, ShutdownReport, Ticket
from dt_exporter._routes import Route
from dt_exporter._routes import events as events_route
from dt_exporter._routes import logs as log_route
from dt_exporter._routes import security as security_route
from dt_exporter.payload import Batch, Body

__all__ = [
    "Batch",
    "Body",
    "BodyResult",
    "Channel",
    "Clock",
    "Encoded",
    "LogBatcher",
    "Route",
    "ShutdownReport",
    "Ticket",
    "events_route",
    "log_route",
    "security_route",
]
