"""loguru through the standard library to Dynatrace (docs/guides/structlog-loguru.md).

loguru does not use `logging`; a sink hands each message to the stdlib logger of the same name as
a `LogRecord`, with loguru's `extra` (from `bind()` and `contextualize()`) as record attributes,
so the OpenTelemetry handler on the root sends them as Dynatrace attributes.

Run:  DT_ENDPOINT=... DT_API_TOKEN=... python examples/guides/loguru_example.py
"""

from __future__ import annotations

import logging
from typing import Any

from loguru import logger

from dt_exporter import setup_dynatrace

#: Attribute names a LogRecord has already: a loguru extra of that name gets an `extra.` prefix.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def to_stdlib(message: Any) -> None:
    """A loguru sink: the message as a stdlib record (level, caller, exception and extra kept)."""
    record = message.record
    exception = record["exception"]
    stdlib_logger = logging.getLogger(record["name"])
    extra = {(f"extra.{k}" if k in _RESERVED else k): v for k, v in record["extra"].items()}
    stdlib_logger.handle(stdlib_logger.makeRecord(
        record["name"], record["level"].no, record["file"].path, record["line"],
        record["message"], (), (exception.type, exception.value, exception.traceback)
        if exception else None, record["function"], extra,
    ))


logging.getLogger().setLevel(logging.INFO)  # the root's default, WARNING, drops INFO
handles = setup_dynatrace("guide-loguru")
logger.add(to_stdlib, level="INFO", format="{message}")

log = logger.bind(customer="c-7")
with logger.contextualize(request_id="r-1"):
    log.info("order placed {order_id}", order_id=1042)
log.success("payment settled")  # loguru's SUCCESS (25) arrives as INFO
try:
    {}["missing"]
except KeyError:
    logger.exception("lookup failed")

handles.shutdown()
stats = handles.exporter.stats()
print(f"delivered {stats.delivered} of {stats.received}")
raise SystemExit(0 if stats.delivered == stats.received else 1)
