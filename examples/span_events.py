"""Span events (recorded exceptions above all) as searchable logs, correlated to the trace.

Run:  DT_ENDPOINT=https://{env}.live.dynatrace.com DT_API_TOKEN=dt0c01... \
      python examples/span_events.py
Each span event becomes a log record with the span's trace_id and span_id; the exception event
becomes an ERROR record whose content is the exception message.
"""

from opentelemetry.trace import Status, StatusCode

from dt_exporter.setup import setup_dynatrace

handles = setup_dynatrace("example-span-events", logging_handler=False)
tracer = handles.tracer_provider.get_tracer("example")

with tracer.start_as_current_span("GET /orders/{id}") as span:
    span.add_event("cache.miss", {"cache.key": "order:1042"})
    try:
        raise TimeoutError("inventory service did not answer within 2 s")
    except TimeoutError as exc:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR))
    trace_id = format(span.get_span_context().trace_id, "032x")

handles.shutdown()
stats = handles.exporter.stats()
print(f"trace {trace_id}: delivered {stats.delivered} of {stats.received} span-event records")
raise SystemExit(0 if stats.delivered == stats.received == 2 else 1)
