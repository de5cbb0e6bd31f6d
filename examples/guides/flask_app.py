"""A Flask application for the web frameworks guide (docs/guides/web-frameworks.md).

`create_app()` sets nothing up: under gunicorn the worker hook in gunicorn.conf.py does, after
the app is loaded; `flask run` (one process) calls `setup_dynatrace` below, in `__main__` only.

Run:  DT_ENDPOINT=... DT_API_TOKEN=... \
      gunicorn -c examples/guides/gunicorn.conf.py --chdir examples/guides 'flask_app:create_app()'
"""

from __future__ import annotations

import logging

from flask import Flask


def create_app() -> Flask:
    app = Flask("shop")

    @app.get("/orders/<int:order_id>")
    def order(order_id: int) -> str:
        # app.logger is the "shop" logger: it propagates to the root, where the handler is.
        app.logger.info("order %d shown", order_id, extra={"order.id": order_id})
        return f"order {order_id}\n"

    @app.get("/fail")
    def fail() -> str:
        raise RuntimeError("payment backend unreachable")  # Flask logs it at ERROR, with it

    return app


if __name__ == "__main__":  # one process: set up here, flush when the server stops
    from dt_exporter import setup_dynatrace

    logging.getLogger().setLevel(logging.INFO)
    handles = setup_dynatrace("guide-flask")
    try:
        create_app().run(host="127.0.0.1", port=8000)
    finally:
        handles.shutdown()
