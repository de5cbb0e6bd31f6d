"""Pure: a timestamp value from a log line becomes epoch nanoseconds, the same on every Python.

One parser for the package: `dt-exporter send` reads JSON log lines' timestamps with it (the stale
filter), so a line's age does not depend on the interpreter. `datetime.fromisoformat` is not used:
it reads `Z`, `+hhmm` and fractions other than 3 or 6 digits only from Python 3.11 on, and from
3.11 on it also reads forms no log writer emits (`2024W181`, `20240501T00`).

Accepted (surrounding whitespace ignored), else `None`:

- ISO 8601 / RFC 3339: `YYYY-MM-DD`, optionally followed by `T`, `t` or a space and `hh:mm`,
  `hh:mm:ss`, or `hh:mm:ss` with a fraction after `.` or `,` of any length (digits beyond the
  ninth are cut, never rounded); then optionally, after an optional space, a zone: `Z`/`z`,
  `+hh:mm`, `+hhmm` or `+hh` (or `-`). No zone means UTC, as Dynatrace reads it. A date alone is
  its midnight UTC. Out-of-range fields (month 13, February 30, hour 24, second 60, offset hours
  above 23) are unreadable.
- Epoch numbers: an `int`, a `float`, or a string of digits with an optional `-` and fraction
  (`"1714521600"`, `"1714521600.5"`; no exponent, no `+`, no `_`). The unit is told by size, with
  Dynatrace's documented thresholds for the first three (OpenPipeline limits,
  https://docs.dynatrace.com/docs/platform/openpipeline/reference/limits) and nanoseconds above:

  | value v                                   | read as      | covers                     |
  |-------------------------------------------|--------------|----------------------------|
  | -10^11 <= v <= 10^11                      | seconds      | ... 5138-11-16             |
  | 10^11 < v <= 10^14                        | milliseconds | 1973-03-03 ... 5138-11-16  |
  | 10^14 < v <= 9,999,999,999,999,999        | microseconds | 1973-03-03 ... 2286-11-20  |
  | 9,999,999,999,999,999 < v <= 2^63 - 1     | nanoseconds  | 1970-04-26 ... 2262-04-11  |

  Negative values are seconds only (a negative ms value is no real log's time). The ns ceiling is
  the int64 range every OpenTelemetry SDK stores. A float is read as the shortest decimal that
  prints it (`repr`), so `1714521600.123` is 123 ms, not the 122.99999 its binary value is.
  NaN, the infinities and `bool` are unreadable.

Results are exact integers (no float arithmetic); fractions of a nanosecond are floored.
"""

from __future__ import annotations

import math
import re
from datetime import date
from decimal import Decimal
from typing import Final

#: Upper bounds (inclusive) of each epoch unit, as the table in the module docstring says.
SECONDS_MAX: Final = 100_000_000_000
MILLIS_MAX: Final = 100_000_000_000_000
MICROS_MAX: Final = 9_999_999_999_999_999
NANOS_MAX: Final = 2**63 - 1
SECONDS_MIN: Final = -SECONDS_MAX

_NS_PER_S: Final = 1_000_000_000
_NS_PER_DAY: Final = 86_400 * _NS_PER_S
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()

_ISO: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r" ?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?)?"
)
_DECIMAL: Final = re.compile(r"(-?)(\d+)(?:\.(\d+))?")
#: What may follow `YYYY-MM-DDThh:mm:ss` (the shape nearly every log writes; read by slicing).
_AFTER_SECONDS: Final = re.compile(r"(?:[.,](\d+))? ?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?")


def parse_timestamp_ns(value: object) -> int | None:
    """Epoch nanoseconds of a timestamp value (ISO 8601 text or an epoch number, see the module
    docstring), or `None` when it is no readable timestamp."""
    if type(value) is int:
        return epoch_ns(value)
    if type(value) is str:
        text = value.strip()
        if text[4:5] == "-":
            return iso8601_ns(text)
        if text.isdigit() and text.isascii():
            return epoch_ns(int(text))
        number = _DECIMAL.fullmatch(text)
        if number is None:
            return None
        sign, whole, fraction = number.groups()
        if fraction is None:
            return epoch_ns(-int(whole) if sign else int(whole))
        return _scaled_ns(int(sign + whole + fraction), 10 ** len(fraction))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):  # an int subclass (IntEnum, numpy-like); a plain int went first
        return epoch_ns(int(value))
    return _float_ns(value)


def epoch_ns(value: int) -> int | None:
    """Epoch nanoseconds of an integer epoch value, its unit told by size."""
    return _scaled_ns(value, 1)


def iso8601_ns(text: str) -> int | None:
    """Epoch nanoseconds of an ISO 8601 / RFC 3339 text (no zone: UTC), or `None`."""
    if len(text) >= 19 and text[10] in "Tt " and text[13] == ":" and text[16] == ":":
        fast = _full_iso_ns(text)
        if fast is not None:
            return fast
    return _regex_iso_ns(text)


def _regex_iso_ns(text: str) -> int | None:
    """`iso8601_ns` by the one regular expression (every shape; the reference for the fast
    path, tests/property/test_timestamps.py holds them equal)."""
    match = _ISO.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, _z, sign, off_h, off_m = match.groups()
    try:
        days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    if hour is None:
        return days * _NS_PER_DAY
    h, m, s = int(hour), int(minute), int(second or 0)
    if h > 23 or m > 59 or s > 59:
        return None
    seconds = days * 86_400 + h * 3600 + m * 60 + s
    if sign is not None:
        oh, om = int(off_h), int(off_m or 0)
        if oh > 23 or om > 59:
            return None
        offset = oh * 3600 + om * 60
        seconds += -offset if sign == "+" else offset
    ns = seconds * _NS_PER_S
    if fraction:
        ns += int(fraction[:9].ljust(9, "0"))
    return ns


def _full_iso_ns(text: str) -> int | None:
    """`iso8601_ns` for `YYYY-MM-DD?hh:mm:ss...` by slicing, with the minute's epoch seconds
    memoised (the lines of one file share their minutes): 5x faster than the whole regex.
    None: not that shape after all, or out of range (the regex path then decides alike)."""
    minute = _MINUTES.get(text[:16])
    if minute is None:
        minute = _minute_seconds(text)
        if minute is None:
            return None
    second = text[17:19]
    if not (second.isdigit() and second.isascii()) or second > "59":
        return None
    seconds = minute + int(second)
    if len(text) == 19 or text[19:] in ("Z", "z"):  # the commonest endings, without the regex
        return seconds * _NS_PER_S
    rest = _AFTER_SECONDS.fullmatch(text, 19)
    if rest is None:
        return None
    fraction, _z, sign, off_h, off_m = rest.groups()
    if sign is not None:
        oh, om = int(off_h), int(off_m or 0)
        if oh > 23 or om > 59:
            return None
        seconds += -(oh * 3600 + om * 60) if sign == "+" else oh * 3600 + om * 60
    if fraction:
        return seconds * _NS_PER_S + int(fraction[:9].ljust(9, "0"))
    return seconds * _NS_PER_S


_MINUTES: Final[dict[str, int]] = {}  # "YYYY-MM-DDThh:mm" -> its epoch seconds
_MINUTES_MAX: Final = 4096


def _minute_seconds(text: str) -> int | None:
    digits = text[0:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16]
    if text[4] != "-" or text[7] != "-" or not (digits.isdigit() and digits.isascii()):
        return None
    h, m = int(digits[8:10]), int(digits[10:12])
    if h > 23 or m > 59:
        return None
    try:
        days = date(int(digits[0:4]), int(digits[4:6]), int(digits[6:8])).toordinal()
    except ValueError:
        return None
    if len(_MINUTES) >= _MINUTES_MAX:
        _MINUTES.clear()
    seconds = _MINUTES[text[:16]] = (days - _EPOCH_ORDINAL) * 86_400 + h * 3600 + m * 60
    return seconds


def _float_ns(value: float) -> int | None:
    if not math.isfinite(value):
        return None
    text = repr(value)  # the shortest decimal that reads back as this float
    if "e" in text:  # 1e-05, 1.5e+16: written out exactly
        numerator, denominator = Decimal(text).as_integer_ratio()
        return _scaled_ns(numerator, denominator)
    whole, _, fraction = text.partition(".")
    return _scaled_ns(int(whole + fraction), 10 ** len(fraction))


def _scaled_ns(numerator: int, denominator: int) -> int | None:
    """Epoch ns of the exact value numerator/denominator (denominator > 0), unit told by size."""
    if numerator < SECONDS_MIN * denominator:
        return None
    if numerator <= SECONDS_MAX * denominator:
        return numerator * _NS_PER_S // denominator
    if numerator <= MILLIS_MAX * denominator:
        return numerator * 1_000_000 // denominator
    if numerator <= MICROS_MAX * denominator:
        return numerator * 1_000 // denominator
    if numerator <= NANOS_MAX * denominator:
        return numerator // denominator
    return None
