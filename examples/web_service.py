"""A FastAPI service auto-instrumented with `opentelemetry-instrument`, logging to Dynatrace.

Needs the extra:  pip install 'dt_exporter[examples]'
Run:
    export DT_ENDPOINT=https://{env}.live.dynatrace.com DT_API_TOKEN=dt0c01...
    export OTEL_LOGS_EXPORTER=dynatrace OTEL_TRACES_EXPORTER=none OTEL_METRICS_EXPORTER=none
    export OTEL_SERVICE_NAME=example-web
    opentelemetry-instrument python examples/web_service.py
The service starts, calls itself twice (one request fails with an exception that the FastAPI
instrumentation records on the span), and stops. Its log lines and the exception span event
arrive in Dynatrace with the request's trace id.
"""

import logging
import threading
import time
import urllib.error
import urllib.request

import uvicorn
from fastapi import FastAPI

app = FastAPI()
log = logging.getLogger("example.web")
logging.getLogger().setLevel(logging.INFO)


@app.get("/orders/{order_id}")
def get_order(order_id: int) -> dict[str, int]:
    log.info("order looked up", extra={"order.id": order_id})
    if order_id == 0:
        raise ValueError("order 0 does not exist")
    return {"order": order_id}


server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
thread = threading.Thread(target=server.run, daemon=True)
thread.start()
while not server.started:
    time.sleep(0.05)
port = server.servers[0].sockets[0].getsockname()[1]
for order_id in (1042, 0):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/orders/{order_id}", timeout=5).read()
    except urllib.error.HTTPError as exc:
        print(f"GET /orders/{order_id} -> {exc.code}")
server.should_exit = True
thread.join(10)
