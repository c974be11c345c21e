"""A flow's inputs as typed on the command line: parsed as their declared type, refused in words."""

from __future__ import annotations

import pytest

from flowrunner import InputError
from flowrunner._inputs import resolve_inputs

FLOW = """
    model: m
    inputs:
      n: {type: integer}
    steps:
      - id: a
        messages: [{role: user, content: "{{ inputs.n }}"}]
"""


def test_a_number_with_more_digits_than_python_reads_is_an_input_error(make_flow):
    with pytest.raises(InputError) as info:
        resolve_inputs(make_flow(FLOW), {"n": "1" * 5000}, from_text=True)
    assert str(info.value) == ("input 'n' expects integer, and '1111111111111111111111111111111111111111...' "
                               "(5,000 characters) is a number of 5,000 digits, more than the 4,300 a number may have")


def test_a_long_value_that_is_not_json_is_quoted_clipped(make_flow):
    with pytest.raises(InputError) as info:
        resolve_inputs(make_flow(FLOW), {"n": "x" * 50_000}, from_text=True)
    assert str(info.value) == ("input 'n' expects integer, and 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' "
                               "(50,000 characters) is not one (write it as JSON, e.g. 3)")
    with pytest.raises(InputError, match=r"^input 'n' expects integer, and 'two' is not one \(write it as JSON"):
        resolve_inputs(make_flow(FLOW), {"n": "two"}, from_text=True)
