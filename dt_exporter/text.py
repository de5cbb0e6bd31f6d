"""Pure helpers that turn any Python value into text Dynatrace accepts.

Rules (documented in the README, "Bad input"):
- lone surrogates (from `surrogateescape` or broken sources) become U+FFFD;
- text longer than a limit is cut on a UTF-8 character boundary and ends with `[TRUNCATED]`;
- an object is described by `str()`, then `repr()`, then `<unrepresentable TypeName>`:
  describing a value never raises.
"""

from __future__ import annotations

import base64
import math
import re
from typing import Final

import orjson

from dt_exporter.limits import TRUNCATION_MARKER

_SURROGATES: Final = re.compile("[\ud800-\udfff]")
_MARKER_BYTES: Final = len(TRUNCATION_MARKER.encode())


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
