"""Attribute values in Dynatrace's two data models, and the `overwrittenN.` naming rule.

Rules (reference section 1.7, https://docs.dynatrace.com/docs/analyze-explore-automate/logs/
lma-log-ingestion/lma-log-ingestion-via-api/lma-ingest-json-txt-logs):
- flattened: objects become dotted keys, up to 5 levels; a deeper part is removed from JSON
  records and replaced by `<truncated due to nesting limit>` in OTLP records;
- raw: an object becomes one JSON string;
- arrays (both models) hold one type: objects and arrays inside become JSON strings, and if any
  element is (or must become) a string, every element does; `null` fits any type;
- a key that is already taken keeps its first value; later values go to `overwrittenN.<key>`
  with the smallest free N.
JSON types are kept (OpenPipeline custom processing); JSON text is compact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

import orjson

DataModel = Literal["flattened", "raw"]
DATA_MODELS: Final = frozenset({"flattened", "raw"})

MAX_NESTING_LEVELS: Final = 5
NESTING_MARKER: Final = "<truncated due to nesting limit>"


def to_json_text(value: Any) -> str:
    """Compact JSON, as Dynatrace stores a stringified object."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # integers beyond 64 bits, which only the stdlib parser produces
        import json

        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def to_text(value: Any) -> str:
    """A scalar or complex value as the string Dynatrace makes of it."""
    if isinstance(value, str):
        return value
    return to_json_text(value)


def normalise_array(items: list[Any]) -> list[Any]:
    """An array of one type: all strings as soon as one element is or must become a string."""
    kind: type | None = None
    mixed = False
    for item in items:
        if item is None:
            continue
        item_kind: type = bool if isinstance(item, bool) else type(item)
        if item_kind is float:
            item_kind = int
        if item_kind in (dict, list, str) or (kind is not None and item_kind is not kind):
            mixed = True
            break
        kind = item_kind
    if not mixed:
        return list(items)
    return [None if item is None else to_text(item) for item in items]


def put(target: dict[str, Any], key: str, value: Any) -> None:
    """Set `key`, or `overwrittenN.key` when the key is taken: the first value wins."""
    if key not in target:
        target[key] = value
        return
    target[overwritten_key(target, key)] = value


def overwritten_key(target: Mapping[str, Any], key: str) -> str:
    """The first free `overwrittenN.<key>` name."""
    number = 1
    while f"overwritten{number}.{key}" in target:
        number += 1
    return f"overwritten{number}.{key}"


def add_attribute(
    target: dict[str, Any], key: str, value: Any, model: DataModel, *, otlp: bool = False
) -> bool:
    """Add one input attribute in the data model; say whether nesting had to be cut."""
    if isinstance(value, dict):
        if model == "raw":
            put(target, key, to_json_text(value))
            return False
        return _flatten(target, key, value, 1, otlp)
    if isinstance(value, list):
        put(target, key, normalise_array(value))
        return False
    put(target, key, value)
    return False


def _flatten(
    target: dict[str, Any], prefix: str, obj: dict[str, Any], level: int, otlp: bool
) -> bool:
    if level >= MAX_NESTING_LEVELS:
        if otlp and obj:
            put(target, prefix, NESTING_MARKER)
        return bool(obj)
    cut = False
    for key, value in obj.items():
        name = f"{prefix}.{key}"
        if isinstance(value, dict):
            cut = _flatten(target, name, value, level + 1, otlp) or cut
        elif isinstance(value, list):
            put(target, name, normalise_array(value))
        else:
            put(target, name, value)
    return cut


def overlay(attributes: dict[str, Any], extra: Mapping[str, str | list[str]]) -> dict[str, Any]:
    """Request-level attributes (query, `X-Dynatrace-Attr`) win over the record's own.

    The record's overridden value is kept as `overwrittenN.<key>`.
    """
    if not extra:
        return attributes
    for key, value in extra.items():
        if key in attributes:
            attributes[overwritten_key(attributes, key)] = attributes[key]
        attributes[key] = value if isinstance(value, str) else list(value)
    return attributes
