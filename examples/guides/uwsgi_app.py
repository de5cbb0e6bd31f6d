"""uWSGI entry of the pre-fork guide (docs/guides/prefork.md): the master imports this module
once, then forks the workers; `@postfork` runs in each worker, `uwsgi.atexit` when it stops.

Run:  DT_ENDPOINT=... DT_API_TOKEN=... \
      uwsgi --master --processes 2 --http-socket 127.0.0.1:8000 \
            --chdir examples/guides --module uwsgi_app:app
"""

from __future__ import annotations

import logging
import os

import uwsgi  # type: ignore[import-not-found]  # exists only inside a uWSGI process
from uwsgidecorators import postfork  # type: ignore[import-not-found]
from wsgi_app import app

from dt_exporter import setup_dynatrace

__all__ = ["app"]
log = logging.getLogger("shop.worker")


@postfork
def set_up_dynatrace() -> None:
    """In each worker, after the fork: its own providers, queue and sender thread."""
    logging.getLogger().setLevel(logging.INFO)  # the root's default, WARNING, drops INFO
    handles = setup_dynatrace("guide-uwsgi")
    uwsgi.atexit = handles.shutdown  # the worker is stopping: deliver what it logged
    log.info("worker %d ready", os.getpid())
