"""Stdlib logging through OpenTelemetry to Dynatrace.

Run:  DT_ENDPOINT=https://{env}.live.dynatrace.com DT_API_TOKEN=dt0c01... \
      python examples/stdlib_logging.py
Without DT_ENDPOINT it sends to the OneAgent local endpoint (http://localhost:14499).
"""

import logging

from dt_exporter.setup import setup_dynatrace

handles = setup_dynatrace("example-stdlib-logging")
log = logging.getLogger("example")
log.setLevel(logging.DEBUG)

log.debug("debug detail: cache size %d", 128)
log.info("user signed in", extra={"user.id": "u-42", "auth.method": "sso"})
log.warning("disk at %d%%", 91)
try:
    {}["missing"]
except KeyError:
    log.exception("lookup failed")

handles.shutdown()  # flushes: every record above is delivered or counted before exit
stats = handles.exporter.stats()
print(f"delivered {stats.delivered} of {stats.received}, dropped {dict(stats.dropped)}")
raise SystemExit(0 if stats.delivered == stats.received else 1)
