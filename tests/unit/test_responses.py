"""responses: how many records a successful-looking answer says were not taken."""

from __future__ import annotations

import json

import pytest

from dt_exporter._responses import events_rejections, logs_json_rejections, nothing_rejected

PARTIAL = "Only a part of input events were ingested due to event invalidity"
TOO_NESTED = "Event(s) have attributes that are too nested for records"


def envelope(message: object) -> bytes:
    return json.dumps({"details": {"code": 200, "message": message}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "rejected"),
    [
        (200, envelope(f"{PARTIAL}: 1, 4, 7"), 3),
        (200, envelope(f"{PARTIAL}: 0"), 1),
        (200, envelope(f"{PARTIAL}: [2,3,5,8,13]"), 5),
        (200, envelope(f"{TOO_NESTED}: 0, 2"), 0),
        (200, envelope(f"{TOO_NESTED.upper()}: 0, 2"), 0),
        (200, envelope(PARTIAL), 0),
        (200, envelope(None), 0),
        (200, envelope(12), 0),
        (200, b"garbage", 0),
        (200, b"", 0),
        (200, b"[]", 0),
        (200, b'{"details": "text"}', 0),
        (200, b'{"error": {"code": 400, "message": "bad: 1, 2"}}', 0),
        (204, b"", 0),
        (400, envelope(f"{PARTIAL}: 1, 2"), 0),
    ],
)
def test_logs_partial_success_count(status: int, body: bytes, rejected: int) -> None:
    """A 200 SuccessEnvelope's listed record indexes are rejections; too-nested ones are not."""
    assert logs_json_rejections(status, body)[0] == rejected


def test_logs_partial_success_returns_the_message() -> None:
    """The server's message comes back for the one log line the sender writes."""
    message = f"{PARTIAL}: 3, 9"
    assert logs_json_rejections(200, envelope(message)) == (2, message)


def results(*statuses: object) -> bytes:
    return json.dumps(
        {
            "reportCount": len(statuses),
            "eventIngestResults": [
                {"correlationId": f"c{i}", "status": s} for i, s in enumerate(statuses)
            ],
        }
    ).encode()


@pytest.mark.parametrize(
    ("body", "rejected", "reasons"),
    [
        (results("OK", "OK"), 0, ""),
        (results("OK", "INVALID_ENTITY_TYPE", "OK"), 1, "INVALID_ENTITY_TYPE"),
        (
            results("INVALID_METADATA", "OK", "INVALID_ENTITY_TYPE", "INVALID_METADATA"),
            3,
            "INVALID_ENTITY_TYPE, INVALID_METADATA",
        ),
        (results(), 0, ""),
        (b'{"eventIngestResults": null}', 0, ""),
        (b'{"eventIngestResults": "OK"}', 0, ""),
        (b"garbage", 0, ""),
        (b"", 0, ""),
        (b"[]", 0, ""),
    ],
)
def test_events_rejections_count_non_ok_results(body: bytes, rejected: int, reasons: str) -> None:
    """Every EventIngestResult whose status is not OK is a rejection, with its status named."""
    assert events_rejections(201, body) == (rejected, reasons)


@pytest.mark.parametrize("body", [b"", b"garbage", envelope(f"{PARTIAL}: 1, 2")])
def test_nothing_rejected(body: bytes) -> None:
    """Routes without partial success never report rejections."""
    assert nothing_rejected(200, body) == (0, "")
