"""`dt-exporter demo`: a small instrumented workload, exported for real, shown as Dynatrace sees it.

With no DT_ENDPOINT the built-in emulator plays Dynatrace on 127.0.0.1 and the demo prints what
it received; with DT_ENDPOINT and DT_API_TOKEN set, the same workload goes to that environment.
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import ExitStack
from typing import Any, TextIO

from opentelemetry.trace import Status, StatusCode

from dt_exporter.config import ENV_VARS, read_env
from dt_exporter.setup import setup_dynatrace

_WORKLOAD_LOGGER = "shop.checkout"


def add_parser(subparsers: Any, name: str) -> None:
    parser = subparsers.add_parser(
        name,
        help="run a small instrumented workload and show what Dynatrace receives",
        description=__doc__,
    )
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for delivery (default 10)")


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    with ExitStack() as stack:
        settings: dict[str, Any] = {}
        emulator = None
        if read_env(ENV_VARS["endpoint"]) is None:
            from dt_exporter.testing import DynatraceEmulator

            emulator = stack.enter_context(DynatraceEmulator())
            settings = {"endpoint": emulator.url, "token": emulator.token}
            print(f"No DT_ENDPOINT set: using the built-in Dynatrace emulator at {emulator.url}",
                  file=out)
        handles = setup_dynatrace("dt-exporter-demo", set_global=False, **settings)
        _workload(handles.tracer_provider.get_tracer("demo"))
        handles.tracer_provider.force_flush()
        handles.logger_provider.force_flush()
        delivered = handles.exporter.force_flush(int(args.timeout * 1000))
        stats = handles.exporter.stats()
        handles.shutdown()
        if emulator is not None:
            _print_records(emulator.records, out)
        else:
            print(f"Sent to {read_env(ENV_VARS['endpoint'])}", file=out)
        print(
            f"\nDelivery: received {stats.received}, delivered {stats.delivered}, "
            f"dropped {dict(stats.dropped) or 0}, truncated {dict(stats.truncated) or 0}, "
            f"requests {stats.requests}, retries {stats.retries}",
            file=out,
        )
        return 0 if delivered and stats.delivered == stats.received else 1
    return 1  # unreachable: ExitStack does not swallow exceptions


def _workload(tracer: Any) -> None:
    """stdlib logging at every level, a traced request that records an exception, and a
    structured record with nested attributes."""
    log = logging.getLogger(_WORKLOAD_LOGGER)
    log.setLevel(logging.DEBUG)
    log.debug("cart loaded with %d items", 3)
    log.info("checkout started", extra={"user.id": "u-1042"})
    log.warning("payment provider slow: %d ms", 812)
    log.error("coupon service unavailable, continuing without discount")
    log.critical("inventory out of sync for sku %s", "A-17")
    with tracer.start_as_current_span("POST /api/checkout") as span:
        log.info("charging card", extra={"order": {"id": 98231, "total": {"eur": 42.5}}})
        try:
            raise ValueError("card declined: insufficient funds")
        except ValueError as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
        span.add_event("retry.scheduled", {"retry.in_s": 30})


def _print_records(records: list[Any], out: TextIO) -> None:
    print(f"\nDynatrace received {len(records)} log records:\n", file=out)
    header = f"{'loglevel':<9} {'content':<48} {'trace_id':<12} key attributes"
    print(header, file=out)
    print("-" * len(header), file=out)
    for record in records:
        content = record.content.replace("\n", " ")
        content = content if len(content) <= 48 else content[:45] + "..."
        trace = (record.trace_id or "")[:8] + ("…" if record.trace_id else "")
        keys = ("otel.scope.name", "span.name", "exception.type", "user.id", "order.id",
                "order.total.eur", "event.name")
        shown = ", ".join(f"{k}={record.attributes[k]}" for k in keys if k in record.attributes)
        print(f"{record.loglevel:<9} {content:<48} {trace:<12} {shown}", file=out)
