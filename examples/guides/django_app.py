"""A one-file Django project for the web frameworks guide (docs/guides/web-frameworks.md).

Its LOGGING configures the root logger, as many projects do: `django.setup()` applies it with
`dictConfig`, which replaces the root's handlers. So `setup_dynatrace` must run after that: the
gunicorn hook `post_worker_init` (gunicorn.conf.py) runs after the app is loaded; `wsgi.py`-style
code calls it after `get_wsgi_application()`.

Run:  DT_ENDPOINT=... DT_API_TOKEN=... \
      gunicorn -c examples/guides/gunicorn.conf.py --chdir examples/guides django_app:application
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="guide-only-not-a-secret",
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    LOGGING={
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"console": {"class": "logging.StreamHandler"}},
        "root": {"handlers": ["console"], "level": "INFO"},  # replaces the root's handlers
    },
)

log = logging.getLogger("shop.orders")


def order(request: HttpRequest, order_id: int) -> HttpResponse:
    log.info("order %d shown", order_id, extra={"order.id": order_id})
    return HttpResponse(f"order {order_id}\n", content_type="text/plain")


def fail(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("payment backend unreachable")  # django.request logs it at ERROR


urlpatterns = [path("orders/<int:order_id>", order), path("fail", fail)]

application = get_wsgi_application()  # django.setup(): LOGGING is applied here
