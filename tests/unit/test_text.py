"""text.json_tree, the one any-value -> JSON converter: its rules, cycles, the depth limit, and
that it never raises."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from dt_exporter._text import (
    CYCLIC,
    JSON_MAX_DEPTH,
    TOO_DEEP,
    json_dumps,
    json_safe,
    json_text,
    json_tree,
)


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def nested(levels: int, leaf: Any = "leaf") -> Any:
    """`levels` lists inside one another around `leaf`: nested(2) == [["leaf"]]."""
    for _ in range(levels):
        leaf = [leaf]
    return leaf


def test_each_kind_of_value_becomes_its_documented_json_value() -> None:
    """Sets, bytes, datetimes, huge ints, NaN, non-str keys, tuples and odd objects all map to
    the JSON values the README's "Bad input" table names."""
    value = json_safe({
        "s": {2, 1}, "b": b"\x01", "d": dt.date(2026, 1, 2), "i": 2**70, "n": -(2**63),
        "f": float("nan"), "inf": -math.inf, 3: "three", "t": (1, "x"),
        "dec": decimal.Decimal("1.5"), "odd": Unprintable(), "none": None, "ok": True,
    })
    assert value == {
        "s": ["1", "2"], "b": "AQ==", "d": "2026-01-02", "i": str(2**70), "n": -(2**63),
        "f": "NaN", "inf": "-Infinity", "3": "three", "t": [1, "x"], "dec": "1.5",
        "odd": "<unrepresentable Unprintable>", "none": None, "ok": True,
    }


def test_a_cycle_becomes_the_cyclic_marker_but_a_shared_value_does_not() -> None:
    """A container inside itself is "<cyclic>"; the same list twice side by side is kept twice."""
    loop: list[Any] = [1]
    loop.append(loop)
    shared = [1, 2]
    tree, cut = json_tree({"loop": loop, "a": shared, "b": shared})
    assert tree == {"loop": [1, CYCLIC], "a": [1, 2], "b": [1, 2]}
    assert not cut


def test_the_depth_limit_cuts_the_deeper_part_and_says_so() -> None:
    """JSON_MAX_DEPTH containers are kept; the one below them becomes "<nested too deep>"."""
    kept, cut = json_tree(nested(JSON_MAX_DEPTH))
    assert not cut and orjson.loads(orjson.dumps(kept)) == nested(JSON_MAX_DEPTH)
    deeper, cut = json_tree(nested(JSON_MAX_DEPTH + 1))
    assert cut and deeper == nested(JSON_MAX_DEPTH, TOO_DEEP)


def test_depth_counts_the_containers_already_around_the_value() -> None:
    """A value already two containers deep may nest two fewer."""
    _, cut = json_tree(nested(JSON_MAX_DEPTH - 2), depth=2)
    assert not cut
    _, cut = json_tree(nested(JSON_MAX_DEPTH - 1), depth=2)
    assert cut


def test_far_deeper_than_any_limit_still_returns() -> None:
    """10,000 levels (past Python's recursion limit and orjson's 255) give text, no error."""
    text = json_text(nested(10_000))
    assert text.startswith("[[[") and TOO_DEEP in text


class BrokenMapping(Mapping[str, Any]):
    """A user mapping whose iteration fails."""

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("cannot iterate")

    def __len__(self) -> int:
        return 1

    def __repr__(self) -> str:
        return "<broken>"


def test_a_container_that_cannot_be_iterated_is_described() -> None:
    """A mapping whose iteration raises becomes its description; its siblings are kept."""
    assert json_safe({"bad": BrokenMapping(), "ok": [1]}) == {"bad": "<broken>", "ok": [1]}


def test_lone_surrogates_become_replacement_characters_in_text() -> None:
    """json_text scrubs lone surrogates (not valid UTF-8) to U+FFFD instead of failing."""
    assert orjson.loads(json_text({"k\ud800": ["\udfff"]})) == {"k\ufffd": ["\ufffd"]}


LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary(max_size=8),
    st.dates(), st.decimals(), st.frozensets(st.integers(), max_size=3),
)
VALUES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), children, max_size=4),
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(VALUES)
def test_any_value_becomes_plain_json(value: Any) -> None:
    """Whatever goes in (no lone surrogates here), orjson serialises json_tree's result as is
    and reads back exactly that tree: JSON types only."""
    tree, _ = json_tree(value)
    assert orjson.loads(orjson.dumps(tree)) == tree
    assert json_dumps(tree) == (orjson.dumps(tree), False)
