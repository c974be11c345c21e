"""Walking exception chains: each exception once, whatever links Python made."""

from __future__ import annotations

from flowrunner._chain import MAX_CHAIN, exception_chain


def test_the_chain_follows_cause_then_context():
    try:
        try:
            try:
                raise KeyError("first")
            except KeyError:
                raise ValueError("second")  # __context__: the KeyError
        except ValueError as exc:
            raise RuntimeError("third") from exc
    except RuntimeError as exc:
        caught = exc
    assert [type(e).__name__ for e in exception_chain(caught)] == ["RuntimeError", "ValueError", "KeyError"]
    assert list(exception_chain(None)) == []


def test_a_chain_that_is_a_cycle_is_walked_once():
    # What `raise exc.__cause__` inside `except Wrapper as exc` builds: each the other's cause or context.
    inner, outer = TypeError("inner"), RuntimeError("outer")
    outer.__cause__, inner.__context__ = inner, outer
    assert list(exception_chain(outer)) == [outer, inner]
    assert list(exception_chain(inner)) == [inner, outer]


def test_a_very_long_chain_is_cut():
    errors = [ValueError(n) for n in range(10 * MAX_CHAIN)]
    for later, earlier in zip(errors[1:], errors):
        later.__cause__ = earlier
    assert list(exception_chain(errors[-1])) == errors[::-1][:MAX_CHAIN]
