"""A plain WSGI application that logs one line per request: the app of the pre-fork guide
(docs/guides/prefork.md). It sets nothing up itself: the server's worker hook does
(gunicorn.conf.py, uwsgi_app.py).

Run:  DT_ENDPOINT=... DT_API_TOKEN=... \
      gunicorn -c examples/guides/gunicorn.conf.py --chdir examples/guides wsgi_app:app
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("shop.http")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    log.info("handled %s", path, extra={"http.route": path, "worker.pid": os.getpid()})
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"served by {os.getpid()}\n".encode()]
