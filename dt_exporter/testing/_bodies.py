"""Reading request bodies and request-level options (reference sections 1.2, 1.3, 5).

Choices where the documentation is silent: an unknown `Content-Encoding`, an unknown charset
or an unsupported content type is answered 400 (Dynatrace's code for input it cannot read);
an invalid `structure` value too.
"""

from __future__ import annotations

import codecs
import json
import zlib
from collections.abc import Iterable, Sequence
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson

from dt_exporter.testing._attributes import DATA_MODELS, DataModel
from dt_exporter.testing._responses import Refusal

JSON_TYPE: Final = "application/json"
TEXT_TYPE: Final = "text/plain"
PROTOBUF_TYPE: Final = "application/x-protobuf"
JSON_LINES_TYPES: Final = frozenset({
    "application/jsonl", "application/jsonlines", "application/jsonlines+json",
    "application/x-ndjson", "application/x-jsonlines",
})  # fmt: skip
#: Query parameters that are options or credentials, never attributes.
RESERVED_QUERY: Final = frozenset({"content-type", "structure", "api-token"})


class InvalidItem:
    """Stands for a JSON Lines line that is not a JSON object (rejected, not fatal)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def media_type(value: str | None) -> tuple[str, str | None]:
    """(lower-cased media type, charset or None) of a Content-Type value."""
    if not value:
        return "", None
    kind, *params = value.split(";")
    charset = None
    for param in params:
        name, _, param_value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = param_value.strip().strip('"').lower()
    return kind.strip().lower(), charset


def decode_content(raw: bytes, encoding: str | None, limit: int) -> bytes:
    """The body after `Content-Encoding`, cut just past `limit` so a gzip bomb stays small."""
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        return raw
    if coding not in ("gzip", "x-gzip"):
        raise Refusal(400, f"Unsupported Content-Encoding {encoding!r}; use gzip.")
    data, rest = b"", raw
    try:
        while True:  # a gzip body may hold several members, one after the other
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data += inflater.decompress(rest, limit + 1 - len(data))
            if len(data) > limit:
                return data
            data += inflater.flush()
            if not inflater.eof:
                raise Refusal(400, "Invalid gzip body: truncated stream")
            rest = inflater.unused_data
            if not rest:
                return data
    except zlib.error as error:
        raise Refusal(400, f"Invalid gzip body: {error}") from None


def decoded_or_raw(raw: bytes, encoding: str | None, limit: int) -> bytes:
    """The decoded body where it can be decoded, else the bytes as received (for the record)."""
    try:
        return decode_content(raw, encoding, limit)
    except Refusal:
        return raw


def query_value(query: Sequence[tuple[str, str]], name: str) -> str | None:
    """The last value of a query parameter, its name matched case-insensitively."""
    found = None
    for key, value in query:
        if key.lower() == name:
            found = value
    return found


def to_utf8(body: bytes, charset: str | None) -> bytes:
    """The body re-encoded as UTF-8 when it declares another charset."""
    if charset is None or charset.replace("-", "") == "utf8":
        return body
    try:
        codecs.lookup(charset)
        return body.decode(charset).encode("utf-8")
    except (LookupError, UnicodeDecodeError) as error:
        raise Refusal(400, f"Cannot read the body as {charset}: {error}") from None


def load_json(data: bytes) -> Any:
    """orjson, with the standard library for what orjson refuses (integers over 64 bits)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_document(body: bytes, charset: str | None, what: str) -> Any:
    """The whole body as one JSON document, or 400."""
    try:
        return load_json(to_utf8(body, charset))
    except ValueError as error:
        raise Refusal(400, f"Invalid JSON in {what}: {error}") from None


def log_items(body: bytes, kind: str, charset: str | None) -> list[Any]:
    """The log events in a JSON or JSON Lines body; lines that fail become `InvalidItem`."""
    if kind == JSON_TYPE:
        document = json_document(body, charset, "the log payload")
        if isinstance(document, dict):
            return [document]
        if isinstance(document, list):
            return document
        raise Refusal(400, "The JSON payload must be an object or an array of objects.")
    items: list[Any] = []
    for line in to_utf8(body, charset).split(b"\n"):
        if not line.strip():
            continue
        try:
            items.append(load_json(line))
        except ValueError as error:
            items.append(InvalidItem(f"invalid JSON: {error}"))
    return items


def request_attributes(
    query: Sequence[tuple[str, str]], attr_headers: Iterable[str]
) -> dict[str, str | list[str]]:
    """Attributes from the query and `X-Dynatrace-Attr`: query wins; repeats make arrays."""
    from_header = _multi(pair for header in attr_headers for pair in _pairs(header))
    from_query = _multi((k, v) for k, v in query if k.lower() not in RESERVED_QUERY)
    return {**from_header, **from_query}


def data_model(
    query: Sequence[tuple[str, str]], options_header: str | None, default: DataModel
) -> DataModel:
    """`structure` from the query, else from `X-Dynatrace-Options`, else the default."""
    chosen = query_value(query, "structure")
    if chosen is None:
        chosen = query_value(_pairs(options_header or ""), "structure")
    if chosen is None:
        return default
    model = chosen.strip().lower()
    if model not in DATA_MODELS:
        raise Refusal(400, f"Invalid structure {chosen!r}; use raw or flattened.")
    return model  # type: ignore[return-value]


def _pairs(text: str) -> list[tuple[str, str]]:
    return parse_qsl(text.strip(), keep_blank_values=True)


def _multi(pairs: Iterable[tuple[str, str]]) -> dict[str, str | list[str]]:
    result: dict[str, str | list[str]] = {}
    for key, value in pairs:
        previous = result.get(key)
        if previous is None:
            result[key] = value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            result[key] = [previous, value]
    return result
