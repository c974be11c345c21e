"""flowrunner/view/_format.py: how numbers read on the page."""

from __future__ import annotations

import math

import pytest

from flowrunner.view._format import dollars, instant, seconds, tokens


@pytest.mark.parametrize("value, text", [(0, "0 ms"), (0.000406, "0.41 ms"), (0.0042, "4.2 ms"), (0.42, "420 ms"),
                                         (1.4246, "1.42 s"), (125.4, "2m 05s"), (None, "–"), ("1", "–"),
                                         (math.nan, "–"), (True, "–")])
def test_seconds(value, text):
    assert seconds(value) == text


@pytest.mark.parametrize("value, text", [(0, "$0"), (0.00024, "$0.00024"), (0.0123, "$0.0123"), (0.5, "$0.5000"),
                                         (1234.5, "$1,234.50"), (None, "–"), (math.inf, "–")])
def test_dollars(value, text):
    assert dollars(value) == text


@pytest.mark.parametrize("value, text", [(1234, "1,234 tok"), (0, "0 tok"), (None, "–"), (1.5, "–"), (False, "–")])
def test_tokens(value, text):
    assert tokens(value) == text


@pytest.mark.parametrize("value", [None, -1, 1e300, math.nan, "yesterday"])
def test_an_instant_that_is_no_time_is_a_dash(value):
    assert instant(value) == "–"
