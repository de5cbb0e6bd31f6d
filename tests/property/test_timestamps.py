"""Properties of the shared timestamp parser: every text form of a moment reads back as that moment.

The suite runs on Python 3.10 to 3.13 (`.ci/run`), and the parser uses no version-dependent
library call, so these hold on each of them alike.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Final

from hypothesis import given
from hypothesis import strategies as st

from dt_exporter import lines
from dt_exporter._timestamps import (
    MICROS_MAX,
    NANOS_MAX,
    SECONDS_MAX,
    _regex_iso_ns,
    iso8601_ns,
    parse_timestamp_ns,
)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)
_S: Final = 1_000_000_000
# Moments at which seconds, ms, µs and ns values all fall in their own size band (the table in
# dt_exporter/_timestamps.py): after 1973-03-03 (ms and µs above 10^11 and 10^14), up to the
# int64 nanosecond limit (2262, which also keeps µs below 10^16).
_FIRST_NS: Final = (SECONDS_MAX // 1000 + 1) * _S
_LAST_NS: Final = NANOS_MAX

instants = st.integers(min_value=_FIRST_NS, max_value=_LAST_NS)
# Every whole-minute offset a zone can have (RFC 3339 allows up to ±23:59).
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


def _wall_clock(ns: int, zone: timezone) -> datetime:
    """The moment `ns` on the wall clock of `zone`, to the whole second."""
    return (_EPOCH + timedelta(seconds=ns // _S)).astimezone(zone)


def _offset_text(zone: timezone, style: str) -> str:
    delta = zone.utcoffset(None)
    minutes = int(delta.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hh, mm = divmod(abs(minutes), 60)
    if style == "Z" and minutes == 0:
        return "Z"
    if style == "+hhmm":
        return f"{sign}{hh:02d}{mm:02d}"
    return f"{sign}{hh:02d}:{mm:02d}"


@given(
    ns=instants,
    zone=offsets,
    digits=st.integers(min_value=0, max_value=12),
    separator=st.sampled_from(["T", " ", "t"]),
    zone_style=st.sampled_from(["Z", "+hhmm", "+hh:mm", "none"]),
    decimal_mark=st.sampled_from([".", ","]),
)
def test_iso_text_reads_back_as_its_moment(
    ns: int, zone: timezone, digits: int, separator: str, zone_style: str, decimal_mark: str
) -> None:
    """ISO 8601 in any zone, offset style and fraction length reads as the moment it writes
    (the fraction cut to its digits, never rounded; no zone is UTC)."""
    if zone_style == "none":
        zone = timezone.utc
    wall = _wall_clock(ns, zone)
    text = wall.strftime(f"%Y-%m-%d{separator}%H:%M:%S")
    nanos = f"{ns % _S:09d}"
    fraction = (nanos + "000")[:digits]
    if digits:
        text += decimal_mark + fraction
    if zone_style != "none":
        text += _offset_text(zone, zone_style)
    expected = ns // _S * _S + int(fraction.ljust(9, "0")[:9] or 0)
    assert parse_timestamp_ns(text) == expected


@given(moment=st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets,
))
def test_isoformat_reads_back_as_the_datetime(moment: datetime) -> None:
    """`datetime.isoformat()` of any aware datetime (µs precision) reads as that datetime."""
    expected = (moment - _EPOCH) // timedelta(microseconds=1) * 1000
    assert parse_timestamp_ns(moment.isoformat()) == expected


@given(ns=instants)
def test_epoch_numbers_in_every_unit_read_as_their_moment(ns: int) -> None:
    """Epoch seconds, ms, µs and ns (number or digit string) read as the moment, floored to
    the unit's precision; seconds with a fraction of any length read exactly."""
    forms = {
        ns // _S * _S: [ns // _S, str(ns // _S)],
        ns // 1_000_000 * 1_000_000: [ns // 1_000_000, str(ns // 1_000_000)],
        ns // 1000 * 1000: [ns // 1000, str(ns // 1000)],
        ns: [ns, str(ns), f"{ns // _S}.{ns % _S:09d}", f"{ns // _S}.{ns % _S:09d}000"],
    }
    assert ns // 1000 <= MICROS_MAX
    for expected, values in forms.items():
        for value in values:
            assert parse_timestamp_ns(value) == expected, value


@given(seconds=st.floats(min_value=-SECONDS_MAX, max_value=SECONDS_MAX, allow_nan=False))
def test_a_float_reads_as_the_text_it_prints(seconds: float) -> None:
    """A float of epoch seconds reads exactly as its printed form (`repr`, written out without
    an exponent) reads as text."""
    text = format(Decimal(repr(seconds)), "f")
    assert parse_timestamp_ns(seconds) == parse_timestamp_ns(text)


@given(micros=st.integers(min_value=_FIRST_NS // 1000, max_value=10**16 - 1))
def test_time_time_floats_are_read_to_the_microsecond(micros: int) -> None:
    """A `time.time()`-style float (µs precision) reads within a microsecond of its moment."""
    seconds = micros / 1_000_000
    ns = parse_timestamp_ns(seconds)
    assert ns is not None
    assert abs(ns - micros * 1000) <= 1000



@given(text=st.from_regex(
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"([.,][0-9]{1,12})? ?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)?\Z"
) | st.text(alphabet="0123456789-:.,+TZ z", min_size=19, max_size=32))
def test_the_fast_path_reads_as_the_regular_expression(text: str) -> None:
    """The sliced fast path for the common shape reads every text exactly as the full regular
    expression does, out-of-range fields and odd endings included."""
    assert iso8601_ns(text) == _regex_iso_ns(text)


@given(text=st.from_regex(
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"([.,][0-9]{1,12})? ?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)? ?\Z"
) | st.text(alphabet="0123456789-:.,+TZ z", min_size=19, max_size=32))
def test_send_reads_timestamps_as_the_shared_parser(text: str) -> None:
    """`dt-exporter send`'s memoised reading (lines.parse_timestamp) gives the shared parser's
    ns floored to ms for every text, read twice (the memo's hit) as once."""
    ns = parse_timestamp_ns(text)
    expected = None if ns is None else ns // 1_000_000
    assert lines.parse_timestamp(text) == expected
    assert lines.parse_timestamp(text) == expected
