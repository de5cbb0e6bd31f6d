"""Logs to the OneAgent local ingest API: no token, no compression, JSON only.

On a host monitored by OneAgent (Full-Stack or Infrastructure, with "local HTTP Metric, Log and
Event Ingest API" enabled), leave DT_ENDPOINT unset and run:
      python examples/oneagent_local.py
OneAgent listens on http://localhost:14499 by default; if its port was changed, point
DT_ENDPOINT at http://localhost:{port}/v2/logs/ingest.
"""

import logging

from dt_exporter.setup import setup_dynatrace

handles = setup_dynatrace("example-oneagent")
config = handles.exporter.config
assert config is not None and config.endpoint.kind == "oneagent", "DT_ENDPOINT points elsewhere"
logging.getLogger("example").warning("sent through OneAgent, token-free")
handles.shutdown()
stats = handles.exporter.stats()
print(f"delivered {stats.delivered} of {stats.received} to {config.logs_url}")
raise SystemExit(0 if stats.delivered == stats.received else 1)
