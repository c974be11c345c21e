"""Walking an exception's chain (`__cause__`, else `__context__`), safely.

Python builds the chain as exceptions are raised, and re-raising an exception inside the handler of
one it caused links them both ways: a chain can be a cycle. Every walk goes through `exception_chain`,
which yields each exception once and stops after `MAX_CHAIN` of them.
"""

from __future__ import annotations

from typing import Iterator

MAX_CHAIN = 100
"""Links followed at most; real chains are a handful long."""


def exception_chain(exc: BaseException | None) -> Iterator[BaseException]:
    """`exc`, then what caused it (its `__cause__`, else its `__context__`), and so on; each exception once."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and len(seen) < MAX_CHAIN:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__
