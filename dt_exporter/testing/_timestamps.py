"""Reading a timestamp value the way Dynatrace does (reference section 1.5).

Accepted: epoch seconds, milliseconds or microseconds as a number or a numeric string (told
apart by size, OpenPipeline's documented thresholds,
https://docs.dynatrace.com/docs/platform/openpipeline/reference/limits), fractional seconds,
ISO 8601 / RFC 3339 with or without a zone (none means UTC), and RFC 3164 (`Dec 17 22:12:31`,
no year: the latest such moment not more than a day ahead of now). Anything else is unparsable.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Final

_SECONDS_MAX: Final = 100_000_000_000
_MILLIS_MAX: Final = 100_000_000_000_000
_MICROS_MAX: Final = 9_999_999_999_999_999
_DAY_MS: Final = 86_400_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND: Final = timedelta(milliseconds=1)

_NUMERIC: Final = re.compile(r"-?\d+(?:\.\d+)?")
_ISO: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(?:([Zz])|([+-])(\d{2}):?(\d{2}))?"
)
_MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_RFC3164: Final = re.compile(r"([A-Za-z]{3}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2})")


def parse_timestamp(value: object, now_ms: int) -> int | None:
    """Epoch milliseconds for a timestamp value, or `None` when Dynatrace cannot read it."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return _from_number(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) >= 19 and text[4] == "-" and text[10] in "Tt " and text[13] == ":":
        fast = _from_iso_fast(text)  # datetime's C parser for the common shape
        if fast is not None:
            return fast
    if _NUMERIC.fullmatch(text):
        return _from_number(int(text) if text.lstrip("-").isdigit() else float(text))
    iso = _ISO.fullmatch(text)
    if iso:
        return _from_iso(iso)
    syslog = _RFC3164.fullmatch(text)
    if syslog:
        return _from_rfc3164(syslog, now_ms)
    return None


def _from_number(number: float) -> int | None:
    if isinstance(number, float) and not math.isfinite(number):
        return None
    if number <= _SECONDS_MAX:
        return math.floor(number * 1000)
    if number <= _MILLIS_MAX:
        return math.floor(number)
    if number <= _MICROS_MAX:
        return math.floor(number / 1000)
    return None


def _from_iso_fast(text: str) -> int | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // _MILLISECOND


def _epoch_ms(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int | None:
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError:
        return None
    return int(moment.timestamp()) * 1000


def _from_iso(match: re.Match[str]) -> int | None:
    year, month, day, hour, minute, second, fraction, _zulu, sign, off_h, off_m = match.groups()
    ms = _epoch_ms(
        int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0)
    )
    if ms is None:
        return None
    if fraction:
        ms += int(fraction[:3].ljust(3, "0"))
    if sign:
        offset_ms = (int(off_h) * 60 + int(off_m)) * 60_000
        ms += -offset_ms if sign == "+" else offset_ms
    return ms


def _from_rfc3164(match: re.Match[str], now_ms: int) -> int | None:
    month_name, day, hour, minute, second = match.groups()
    month = _MONTHS.get(month_name.lower())
    if month is None:
        return None
    year = datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc).year
    for candidate in (year + 1, year, year - 1):
        ms = _epoch_ms(candidate, month, int(day), int(hour), int(minute), int(second))
        if ms is not None and ms <= now_ms + _DAY_MS:
            return ms
    return None
