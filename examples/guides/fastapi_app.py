"""A FastAPI application for the web frameworks guide (docs/guides/web-frameworks.md): the
lifespan sets up at startup and flushes at shutdown, in each worker process; the FastAPI
instrumentation gives every request a span, so its log records carry the trace id.

Run:  DT_ENDPOINT=... DT_API_TOKEN=... \
      uvicorn --app-dir examples/guides fastapi_app:app --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from dt_exporter import setup_dynatrace

log = logging.getLogger("shop.orders")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    logging.getLogger().setLevel(logging.INFO)  # the root's default, WARNING, drops INFO
    handles = setup_dynatrace("guide-fastapi")
    try:
        yield
    finally:
        handles.shutdown()  # uvicorn stops (SIGTERM, Ctrl-C): deliver what was logged


app = FastAPI(lifespan=lifespan)
FastAPIInstrumentor.instrument_app(app)  # spans use the global provider once it is set


@app.get("/orders/{order_id}")
async def order(order_id: int) -> dict[str, int]:
    log.info("order %d shown", order_id, extra={"order.id": order_id})
    return {"order": order_id}
