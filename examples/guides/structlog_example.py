"""structlog through the standard library to Dynatrace (docs/guides/structlog-loguru.md).

structlog hands each event to a stdlib logger; `render_to_log_kwargs` turns the event dict into
the message and `extra`, so bound and call-site keys become Dynatrace attributes.

Run:  DT_ENDPOINT=... DT_API_TOKEN=... python examples/guides/structlog_example.py
"""

from __future__ import annotations

import logging

import structlog

from dt_exporter import setup_dynatrace

logging.getLogger().setLevel(logging.INFO)  # the root's default, WARNING, drops INFO
handles = setup_dynatrace("guide-structlog")

structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,  # structlog.contextvars.bind_contextvars(...)
        structlog.stdlib.filter_by_level,
        structlog.processors.TimeStamper(fmt="iso", key="event.time"),  # not `timestamp`
        structlog.stdlib.render_to_log_kwargs,  # event -> msg, other keys -> extra
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)

log = structlog.get_logger("shop.checkout")
structlog.contextvars.bind_contextvars(request_id="r-1")
log.bind(customer="c-7").info("order placed", order_id=1042, total=99.5)
log.warning("stock low", sku="A-1", left=2)
try:
    {}["missing"]
except KeyError:
    log.exception("lookup failed")

handles.shutdown()
stats = handles.exporter.stats()
print(f"delivered {stats.delivered} of {stats.received}")
raise SystemExit(0 if stats.delivered == stats.received else 1)
