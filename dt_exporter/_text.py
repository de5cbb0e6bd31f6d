"""Pure helpers that turn any Python value into text Dynatrace accepts.

Rules (documented in the README, "Bad input"):
- lone surrogates (from `surrogateescape` or broken sources) become U+FFFD;
- text longer than a limit is cut on a UTF-8 character boundary and ends with `[TRUNCATED]`;
- an object is described by `str()`, then `repr()`, then `<unrepresentable TypeName>`:
  describing a value never raises;
- `json_tree` is the one converter of any value to JSON types (the log mapping, the events and
  the security events use it; only the OTLP encoder, another wire format, has its own).
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
from collections.abc import Mapping, Set
from typing import Any, Final

import orjson

from dt_exporter.limits import TRUNCATION_MARKER

_SURROGATES: Final = re.compile("[\ud800-\udfff]")
_MARKER_BYTES: Final = len(TRUNCATION_MARKER.encode())
#: How many containers deep `json_tree` goes; a container deeper than this becomes `TOO_DEEP`.
#: The reason for 64: orjson refuses documents nested more than 255 levels, and `json_tree`
#: recurses once per level in Python, from inside an application's own call stack (the default
#: recursion limit is 1,000), so the limit must stay well under both; 64 is far more than any log
#: or event carries (attributes are flattened to dotted keys beyond `max_nesting_depth`, 5).
JSON_MAX_DEPTH: Final = 64
CYCLIC: Final = "<cyclic>"
TOO_DEEP: Final = "<nested too deep>"
#: The integers Dynatrace keeps as numbers (signed and unsigned 64 bits); others become text.
JSON_INT_MIN: Final = -(2**63)
JSON_INT_MAX: Final = 2**64 - 1


def scrub(text: str) -> str:
    """Replace lone surrogates, which are not valid UTF-8, with U+FFFD."""
    return _SURROGATES.sub("\ufffd", text)


def utf8_len(text: str) -> int:
    """UTF-8 length of `text`; cheap for ASCII-only text."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def truncate_utf8(text: str, max_bytes: int) -> tuple[str, bool]:
    """Cut `text` to at most `max_bytes` UTF-8 bytes, marker included; say whether it was cut."""
    if len(text) * 4 <= max_bytes or utf8_len(text) <= max_bytes:
        return text, False
    if max_bytes <= _MARKER_BYTES:
        return TRUNCATION_MARKER.encode()[:max(max_bytes, 0)].decode(), True
    budget = max_bytes - _MARKER_BYTES
    # Scrub first (U+FFFD is 3 bytes, like an encoded surrogate) so no surrogate is lost.
    cut = scrub(text).encode("utf-8")[:budget].decode("utf-8", "ignore")
    return cut + TRUNCATION_MARKER, True


def describe(value: object) -> str:
    """A string for any object, without ever raising."""
    for render in (str, repr):
        try:
            text = render(value)
        except Exception:  # noqa: S112 - user objects may raise anything here
            continue
        if isinstance(text, str):
            return text
    return f"<unrepresentable {type(value).__name__}>"


def int_text(value: int) -> str:
    """Decimal text of any int; past Python's 4,300-digit conversion limit, `<int of N bits>`."""
    try:
        return str(value)
    except ValueError:
        return f"<int of {value.bit_length()} bits>"


def bytes_to_text(value: bytes | bytearray | memoryview) -> str:
    """Bytes become base64, as Dynatrace itself stores OTLP byte arrays."""
    return base64.b64encode(bytes(value)).decode("ascii")


def float_to_json(value: float) -> float | str:
    """JSON has no NaN or infinities: those become the strings "NaN", "Infinity", "-Infinity"."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def json_dumps(value: object) -> tuple[bytes, bool]:
    """Serialise JSON-typed `value` with orjson; say whether lone surrogates had to be scrubbed.

    orjson refuses lone surrogates (they are not valid UTF-8); rather than scan every string up
    front, we try the fast path and scrub only when it fails.
    """
    try:
        return orjson.dumps(value), False
    except orjson.JSONEncodeError:
        pass
    try:
        return orjson.dumps(_scrubbed(value)), True
    except orjson.JSONEncodeError:  # still not serialisable (too deep): say so, never raise
        return orjson.dumps(describe(value)[:1000]), True


def _scrubbed(value: object) -> object:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub(str(k)): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    return value


def scalar_text(value: object) -> str:
    """Text for a value JSON has no type for: ISO 8601 for datetimes, dates and times, else
    `describe`."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return describe(value)


def json_tree(value: object, depth: int = 0) -> tuple[Any, bool]:
    """`value` as JSON types only (dicts with str keys, lists, str, int, float, bool, None),
    which `json_dumps` always serialises; and whether a part had to be cut for depth.
    Never raises.

    Rules: ints outside 64 bits become their decimal text (`int_text`); NaN and infinities
    strings (`float_to_json`); bytes base64; non-str keys `describe`d; tuples lists; sets sorted
    lists of `describe`d members; datetimes ISO 8601, other objects `describe`d; a container
    inside itself `CYCLIC`; a container `JSON_MAX_DEPTH` containers deep `TOO_DEEP` (`depth`:
    how many containers already lie around `value`); a container whose iteration raises is
    `describe`d. Lone surrogates stay: `json_dumps` scrubs them.
    """
    cut = False
    active: set[int] = set()

    def node(value: object, level: int) -> Any:
        nonlocal cut
        if value is None or isinstance(value, (str, bool)):
            return value
        if isinstance(value, int):
            return value if JSON_INT_MIN <= value <= JSON_INT_MAX else int_text(value)
        if isinstance(value, float):
            return float_to_json(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes_to_text(value)
        if not isinstance(value, (Mapping, list, tuple, Set)):
            return scalar_text(value)
        if level >= JSON_MAX_DEPTH:
            cut = True
            return TOO_DEEP
        if isinstance(value, Set):
            return sorted(map(describe, value))
        key = id(value)
        if key in active:
            return CYCLIC
        active.add(key)
        level += 1
        try:
            if isinstance(value, Mapping):
                tree: Any = {k if type(k) is str else _key(k): node(v, level)
                             for k, v in value.items()}
            else:
                tree = [node(v, level) for v in value]
        except Exception:  # a user container whose iteration raises: describe it instead
            tree = describe(value)
        active.discard(key)
        return tree

    return node(value, depth), cut


def _key(key: object) -> str:
    return key if isinstance(key, str) else describe(key)


def json_safe(value: object, depth: int = 0) -> Any:
    """`value` as JSON types only, by `json_tree`'s rules (without saying what was cut)."""
    return json_tree(value, depth)[0]


def json_text(value: object) -> str:
    """Compact JSON text of any value by `json_tree`'s rules (lone surrogates as U+FFFD); never
    raises."""
    return json_dumps(json_tree(value)[0])[0].decode()
