"""Answers in Dynatrace's shapes: `ErrorEnvelope`, `SuccessEnvelope` (reference section 2.5)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

JSON: Final = "application/json; charset=utf-8"
PARTIAL_MESSAGE: Final = (
    "Only a part of input events were ingested due to event invalidity. Rejected event indexes: "
)
TOO_NESTED_MESSAGE: Final = "Event(s) have attributes that are too nested for records: "


@dataclass(frozen=True, slots=True)
class Answer:
    """Status, headers and body of one HTTP answer."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class Refusal(Exception):  # noqa: N818 - it is an answer, not an error of the emulator
    """Raised while handling a request: answer `status` with an `ErrorEnvelope`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def answer(self) -> Answer:
        return error_answer(self.status, self.message)


def json_answer(status: int, document: Any) -> Answer:
    return Answer(status, {"Content-Type": JSON}, orjson.dumps(document))


def error_answer(status: int, message: str) -> Answer:
    """`{"error": {"code": N, "message": "..."}}`"""
    return json_answer(status, {"error": {"code": status, "message": message}})


def success_answer(message: str) -> Answer:
    """200 with `{"details": {"code": 200, "message": "..."}}`: a partial success."""
    return json_answer(200, {"details": {"code": 200, "message": message}})


def index_list(indexes: Iterable[int]) -> str:
    """`[1, 4]`, as Dynatrace lists record indexes."""
    return "[" + ", ".join(str(index) for index in sorted(indexes)) + "]"


def partial_answer(rejected: Iterable[int], too_nested: Iterable[int] = ()) -> Answer:
    """The partial-success answer naming rejected and cut-down records."""
    rejected, too_nested = sorted(set(rejected)), sorted(set(too_nested))
    parts = []
    if rejected:
        parts.append(PARTIAL_MESSAGE + index_list(rejected))
    if too_nested:
        parts.append(TOO_NESTED_MESSAGE + index_list(too_nested))
    return success_answer(" ".join(parts))
