"""A serverless function (AWS Lambda, Google Cloud Functions, Azure Functions) that logs to
Dynatrace and loses nothing when the platform freezes or ends the process after it returns.

Set up once, at cold start (module level); flush at the end of every invocation: after
`force_flush()` returns, every record logged so far has been delivered (or counted as dropped
in `stats()`), so the freeze that follows the return cannot take any with it.

    export DT_ENDPOINT=https://{your-environment-id}.live.dynatrace.com
    export DT_API_TOKEN=dt0c01....            # an access token with the logs.ingest scope
    python examples/serverless_handler.py     # runs one invocation locally
"""

from __future__ import annotations

import logging
from typing import Any

from dt_exporter import setup_dynatrace

# Cold start: providers, exporter and logging handler, once per process.
dynatrace = setup_dynatrace("orders-function")
logging.getLogger().setLevel(logging.INFO)
log = logging.getLogger("orders")


def handler(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    """The function's entry point (Lambda's `handler(event, context)` signature)."""
    items = list(event.get("items", []))
    for item in items:
        log.info("processed item %s", item, extra={"item.id": item})
    # Before returning: the platform may freeze the process the moment we do.
    delivered = dynatrace.force_flush(timeout_millis=5_000)
    return {"processed": len(items), "flushed": delivered}


if __name__ == "__main__":
    print(handler({"items": [1, 2, 3]}))
