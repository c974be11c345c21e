"""A rendering's budget: sizes as values would print, shared parts counted each time, walked once."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2.utils import Namespace

from flowrunner._budget import Budget, Buffer, Counted, OverLimit, TemplateLimits

SMALL = TemplateLimits(value=1_000, built=5_000, iterations=10)


def test_sizes_follow_what_printing_would_print() -> None:
    budget = Budget(TemplateLimits())
    for value in ["abc", [1, "ab"], {"k": [None, 2.5]}, (True,), {1, 2}, "x" * 500]:
        size, _ = budget.shape(value, "it")
        assert len(str(value)) <= size <= 6 * len(str(value)) + 40, value  # never less, not much more


def test_shared_parts_count_every_time_and_are_walked_once() -> None:
    value: Any = ["x" * 10]
    for _ in range(60):  # 2**60 leaves when printed, 61 lists in memory
        value = [value, value]
    with pytest.raises(OverLimit, match="it would print a value of over 1,000 characters, the limit for one value"):
        Budget(SMALL).measure(value, "it")
    budget = Budget(TemplateLimits(value=10**30))
    size, depth = budget.shape(value, "it")
    assert size > 2**60 and depth == 61


def test_a_collection_holding_itself_is_measured() -> None:
    ns = Namespace(a=1)
    ns["me"] = ns
    size, _ = Budget(TemplateLimits()).shape(ns, "it")
    assert size < 100


def test_building_counts_against_one_value_and_the_total() -> None:
    budget = Budget(SMALL)
    with pytest.raises(OverLimit, match="`~` would build 1,001 characters or items, over the limit of 1,000"):
        budget.allocate(1_001, "`~`")
    for _ in range(5):
        budget.allocate(1_000, "`~`")
    with pytest.raises(OverLimit, match="built over 5,000 characters or items in all"):
        budget.allocate(1, "`~`")


def test_loops_count_their_items_and_keep_their_length() -> None:
    budget = Budget(SMALL)
    items = Counted(range(8), budget)
    assert len(items) == 8 and list(items) == list(range(8)) and budget.iterations == 8
    with pytest.raises(OverLimit, match="loops ran over 10 iterations"):
        list(Counted(range(8), budget))
    with pytest.raises(TypeError):
        len(Counted((x for x in range(3)), budget))  # as for the generator itself: loop.length copes


def test_a_block_stops_growing_at_the_one_value_limit() -> None:
    buffer = Buffer(Budget(SMALL))
    buffer.extend(["x" * 600])
    with pytest.raises(OverLimit, match="a block's text would build 1,200 characters"):
        buffer.append("y" * 600)
    assert "".join(buffer) == "x" * 600
