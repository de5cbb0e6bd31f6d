"""Dynatrace's documented ingest limits, as client-side profiles.

Sources (Dynatrace documentation):
- Grail / Log Management and Analytics:
  https://docs.dynatrace.com/docs/analyze-explore-automate/logs/lma-limits
- Log Monitoring Classic:
  https://docs.dynatrace.com/docs/analyze-explore-automate/log-monitoring/log-monitoring-limits
- Events API v2: https://docs.dynatrace.com/docs/dynatrace-api/environment-api/events-v2/post-event
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

ProfileName = Literal["grail", "classic"]

#: A record older than this makes Dynatrace reject the whole request with 400.
MAX_RECORD_AGE_NS: Final = 24 * 3600 * 1_000_000_000
#: We stop a few minutes short of 24 h: a body still has to cross the buffer and the network.
STALE_MARGIN_NS: Final = 5 * 60 * 1_000_000_000

#: `/api/v2/logs/ingest`: 10 MB and 50,000 records per request (all profiles).
LOGS_MAX_REQUEST_BYTES: Final = 10_000_000
LOGS_MAX_RECORDS_PER_REQUEST: Final = 50_000
#: Our default stays under the limit with room for Dynatrace's own growth on ingest (the 16 MB
#: post-processing check); the Logstash plugin by Dynatrace R&D uses the same figure.
DEFAULT_JSON_REQUEST_BYTES: Final = 9_500_000
#: OTLP logs: the access-limit page says 2 MB, the LMA page says 10 MB; we take the safe one.
DEFAULT_OTLP_REQUEST_BYTES: Final = 2_000_000

#: Events API v2 (`/api/v2/events/ingest`).
EVENT_MAX_PROPERTIES: Final = 100
EVENT_MAX_KEY_CHARS: Final = 100
EVENT_MAX_VALUE_CHARS: Final = 4096
#: The general API payload limit applies to the events endpoint.
EVENTS_MAX_REQUEST_BYTES: Final = 1_000_000

TRUNCATION_MARKER: Final = "[TRUNCATED]"


@dataclass(frozen=True, slots=True)
class LimitProfile:
    """Per-record limits Dynatrace enforces; all byte counts are UTF-8 bytes."""

    name: ProfileName
    max_key_bytes: int
    max_value_bytes: int
    max_attributes: int
    max_values_per_attribute: int
    max_nesting_depth: int
    max_content_bytes: int


GRAIL: Final = LimitProfile(
    name="grail",
    max_key_bytes=100,
    max_value_bytes=32_768,
    max_attributes=500,
    max_values_per_attribute=32,
    max_nesting_depth=5,
    # 10 MB with OpenPipeline, but 512 kB when routed to the Classic pipeline: take the bound
    # that holds on every Grail tenant.
    max_content_bytes=524_288,
)

CLASSIC: Final = LimitProfile(
    name="classic",
    max_key_bytes=100,
    max_value_bytes=250,
    max_attributes=50,
    max_values_per_attribute=32,
    max_nesting_depth=5,
    max_content_bytes=8_192,
)

PROFILES: Final[dict[str, LimitProfile]] = {"grail": GRAIL, "classic": CLASSIC}
