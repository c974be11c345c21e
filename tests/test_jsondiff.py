"""flowrunner._jsondiff: the first difference of two JSON values, and their unified diff."""

from __future__ import annotations

from flowrunner._jsondiff import Wording, diff_lines, first_difference

WORDS = Wording(only_a="{path}: only A ({a})", only_b="{path}: only B ({b})",
                lengths="{path}: {na} vs {nb} items", values="{path}: {a} vs {b}")


def test_the_walk_names_the_first_place_the_values_part():
    assert first_difference({"a": 1, "b": [1, 2]}, {"a": 1, "b": [1, 3]}, "v", WORDS) == "v.b[1]: 2 vs 3"
    assert first_difference({"a": 1}, {"a": 1, "c": "new"}, "v", WORDS) == "v.c: only B ('new')"
    assert first_difference({"a": 1, "z": 0}, {"a": 1}, "v", WORDS) == "v.z: only A (0)"
    assert first_difference([1, 2], [1, 2, 3], "v", WORDS) == "v: 2 vs 3 items"
    assert first_difference({"a": 1}, [1], "v", WORDS) == 'v: {"a": 1} vs [1]'


def test_the_diff_has_no_line_numbers_and_is_bounded():
    lines = diff_lines({"a": 1, "b": 2}, {"a": 1, "b": 3}, context=1, width=160, limit=10)
    assert lines == ['   "a": 1,', '-  "b": 2', '+  "b": 3', ' }']
    many = diff_lines(list(range(100)), list(range(100, 200)), context=0, width=160, limit=5)
    assert len(many) == 6 and many[-1].endswith("more lines)")
    assert diff_lines("x" * 50, "y" * 50, context=1, width=160, limit=5, max_chars=60) == [
        "(too large to compare line by line: 50 and 50 characters)"]
