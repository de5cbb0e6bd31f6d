"""The ingest-API catalog: what each Dynatrace endpoint is, in one place.

A `Route` is everything the channel needs to send a body to one API and to read the answer:
its URL (from the configured endpoint), content type, the token scope it needs (named when it
answers 401/403), a fallback URL, and the codecs of its bodies: `split` (after a 413, into
halves that each know their record count, so no half is parsed twice), `count`,
`read_rejections` (how many records a 200/201 says were refused), `expire` (drop the records
past Dynatrace's 24 h window from a body, keep the fresh ones) and the harmless `probe` body
`dt-exporter check` sends.

- `logs`: `POST /api/v2/logs/ingest` (OneAgent: `/v2/logs/ingest`), scope `logs.ingest`,
  a JSON array of log objects.
- `otlp`: `POST /api/v2/otlp/v1/logs`, scope `logs.ingest`, an OTLP `ExportLogsServiceRequest`.
- `events`: `POST /api/v2/events/ingest` (OneAgent: `/v2/events/ingest`), scope
  `events.ingest`, one event per body.
- `security`: `POST /platform/ingest/custom/security.events/{name}` (legacy
  `events.security`), scope `openpipeline.events_security.custom`, a JSON array.

Sources: https://docs.dynatrace.com/docs/shortlink/lma-log-ingestion-api,
https://docs.dynatrace.com/docs/shortlink/otlp-logs,
https://docs.dynatrace.com/docs/dynatrace-api/environment-api/events-v2/post-event,
https://docs.dynatrace.com/docs/shortlink/openpipeline-ingest-api.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import orjson

from dt_exporter import _payload as payload
from dt_exporter import _responses as responses
from dt_exporter.config import ExporterConfig

JSON: Final = "application/json; charset=utf-8"
PROTOBUF: Final = "application/x-protobuf"
LOGS_SCOPE: Final = "logs.ingest"
EVENTS_SCOPE: Final = "events.ingest"
SECURITY_SCOPE: Final = "openpipeline.events_security.custom"

#: (status, response body) -> (records the server rejected, its message)
RejectionReader = Callable[[int, bytes], tuple[int, str]]
#: An uncompressed body -> its halves with their record counts; None: it cannot be split.
Splitter = Callable[[bytes], "list[tuple[bytes, int]] | None"]
#: (uncompressed body, cutoff ns) -> (kept body or None if nothing is left, records kept,
#: records expired, oldest kept timestamp ns or 0)
Expirer = Callable[[bytes, int], tuple["bytes | None", int, int, int]]


@dataclass(frozen=True, slots=True)
class Route:
    """One ingest API, as the channel sends to it."""

    name: str
    url: str
    content_type: str
    scope: str
    split: Splitter
    count: Callable[[bytes], int]
    read_rejections: RejectionReader
    probe: bytes = b"[]"  # a request body that ingests nothing (`dt-exporter check`)
    expire: Expirer | None = None  # None: records carry no timestamp we can read back
    authorization: str | None = field(default=None, repr=False)
    fallback_url: str | None = None  # tried from then on after a 404 (legacy OpenPipeline path)
    #: Joins uncompressed bodies into one request (coalescing small bodies); None: never.
    merge: Callable[[list[bytes]], bytes] | None = None


def logs(config: ExporterConfig) -> Route:
    """The log route of `config`: JSON log ingest, or OTLP with `protocol="otlp"`."""
    if config.protocol == "otlp":
        from dt_exporter import _otlp as otlp

        return Route(
            name="otlp", url=config.logs_url, content_type=PROTOBUF, scope=LOGS_SCOPE,
            split=_halves(otlp.split_request, otlp.count_records), count=otlp.count_records,
            read_rejections=lambda status, body: otlp.parse_partial_success(body),
            probe=b"", expire=otlp.expire_records, authorization=config.authorization,
            merge=b"".join,  # requests concatenate: resource_logs is a repeated field
        )
    return Route(
        name="logs", url=config.logs_url, content_type=JSON, scope=LOGS_SCOPE,
        split=split_json_array, count=payload.count_json_array,
        read_rejections=responses.logs_json_rejections, expire=expire_json_logs,
        authorization=config.authorization, merge=merge_json_arrays,
    )


def events(config: ExporterConfig) -> Route:
    """Events API v2: one event per body (the API documents one `EventIngest` per request)."""
    return Route(
        name="events", url=config.endpoint.events_url, content_type=JSON, scope=EVENTS_SCOPE,
        split=split_json_array, count=payload.count_json_array,
        read_rejections=responses.one_event_rejections, authorization=config.authorization,
    )


def security(config: ExporterConfig, endpoint_name: str) -> Route:
    """OpenPipeline custom security events; tenants still on the legacy path answer 404."""
    endpoint = config.endpoint
    return Route(
        name="security", url=endpoint.security_events_url(endpoint_name), content_type=JSON,
        scope=SECURITY_SCOPE, split=split_json_array, count=payload.count_json_array,
        read_rejections=responses.nothing_rejected, authorization=config.authorization,
        fallback_url=endpoint.security_events_url(endpoint_name, legacy=True),
        merge=merge_json_arrays,
    )


# -- body codecs ---------------------------------------------------------------------------------


def _halves(
    split: Callable[[bytes], tuple[bytes, bytes] | None], count: Callable[[bytes], int]
) -> Splitter:
    def halves(data: bytes) -> list[tuple[bytes, int]] | None:
        parts = split(data)
        return None if parts is None else [(part, count(part)) for part in parts]

    return halves


def split_json_array(data: bytes) -> list[tuple[bytes, int]] | None:
    """Halve a JSON array body (after a 413); None when it holds fewer than two objects."""
    try:
        items = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(items, list) or len(items) < 2:
        return None
    middle = len(items) // 2
    return [(orjson.dumps(items[:middle]), middle),
            (orjson.dumps(items[middle:]), len(items) - middle)]


def merge_json_arrays(arrays: list[bytes]) -> bytes:
    """One JSON array of the elements of `arrays` (each a JSON array, as `payload` writes)."""
    inner = [array.strip()[1:-1].strip() for array in arrays]
    return b"[" + b",".join(part for part in inner if part) + b"]"


def expire_json_logs(data: bytes, cutoff_ns: int) -> tuple[bytes | None, int, int, int]:
    """Drop the log objects whose `timestamp` (epoch ms, as `mapping` writes it) is before
    `cutoff_ns`; objects without a numeric timestamp are kept (Dynatrace stamps them)."""
    try:
        items = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data, payload.count_json_array(data), 0, 0
    if not isinstance(items, list):
        return data, 1, 0, 0
    cutoff_ms = cutoff_ns // 1_000_000
    kept: list[object] = []
    oldest_ms = 0
    for item in items:
        ts = item.get("timestamp") if isinstance(item, dict) else None
        if type(ts) in (int, float):
            assert isinstance(ts, (int, float))
            if ts < cutoff_ms:
                continue
            oldest_ms = int(ts) if not oldest_ms else min(oldest_ms, int(ts))
        kept.append(item)
    expired = len(items) - len(kept)
    if not expired:
        return data, len(items), 0, oldest_ms * 1_000_000
    return (orjson.dumps(kept) if kept else None), len(kept), expired, oldest_ms * 1_000_000
