"""gunicorn settings for the pre-fork guide (docs/guides/prefork.md): each worker sets up its own
exporter after the application is loaded, and flushes it when it exits.

Run:  DT_ENDPOINT=... DT_API_TOKEN=... \
      gunicorn -c examples/guides/gunicorn.conf.py --chdir examples/guides wsgi_app:app
"""

from __future__ import annotations

import logging
from typing import Any

from dt_exporter import setup_dynatrace

bind = "127.0.0.1:8000"
workers = 2
control_socket_disable = True  # gunicorn 25+ opens one in $HOME otherwise; not needed here

_handles = None


def post_worker_init(worker: Any) -> None:
    """In the worker, after the app is imported: logging configured by the app (Django's
    LOGGING, basicConfig) is in place, so the Dynatrace handler added here stays."""
    global _handles
    logging.getLogger().setLevel(logging.INFO)  # the root's default, WARNING, drops INFO
    _handles = setup_dynatrace("guide-gunicorn")


def worker_exit(server: Any, worker: Any) -> None:
    """The worker is stopping (SIGTERM, max_requests, reload): deliver what it logged."""
    if _handles is not None:
        _handles.shutdown()
