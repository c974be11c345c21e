"""What differs between two stored runs, as data: `flowrun runs diff` prints it, the web page renders it.

The run record keeps each round's request body as sent and what came back (model, finish reason,
content, calls, usage); a round's diff is of both, as a unified diff of its pretty-printed JSON plus the
first difference said briefly (as a cassette miss says it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import _jsondiff as jsondiff
from .._jsondiff import Wording
from .._record import TIMING_FIELDS
from ._store import StoredRun

MAX_DIFF_LINES = 200
"""Lines of one round's unified diff kept; the rest is counted in a last line."""
_MAX_TEXT = 2_000_000
"""Characters of a round's JSON compared line by line; past it, only whether they differ is said."""


@dataclass(frozen=True)
class ValueChange:
    """A named value (an input, an output, a total) in run A and in run B; None where a run lacks it."""

    name: str
    a: Any
    b: Any


@dataclass(frozen=True)
class RoundDiff:
    """One round (by position) of one step in both runs: what the record holds for it, and how it differs."""

    step: str
    index: int
    a: dict[str, Any] | None
    b: dict[str, Any] | None
    first_difference: str | None
    """Where the two first differ, said briefly; None when they are the same."""
    lines: list[str] = field(default_factory=list)
    """A unified diff (`-` run A, `+` run B) of the round's JSON, pretty-printed with sorted keys."""

    @property
    def same(self) -> bool:
        return self.first_difference is None


@dataclass(frozen=True)
class StepDiff:
    """One step (by id, in run A's order, then B's own) in both runs."""

    id: str
    status_a: str | None
    status_b: str | None
    rounds: list[RoundDiff]

    @property
    def same(self) -> bool:
        return self.status_a == self.status_b and all(r.same for r in self.rounds)


@dataclass(frozen=True)
class RunDiff:
    """Everything that differs between runs A and B; the `*_changes` lists hold only what differs."""

    a: StoredRun
    b: StoredRun
    same_flow: bool | None
    """Whether both ran the same flow file text (None when a run's flow hash is unknown)."""
    inputs: list[ValueChange]
    outputs: list[ValueChange]
    steps: list[StepDiff]
    calls: list[ValueChange]
    """How many times each function was called, where the counts differ."""
    totals: list[ValueChange]
    """status, error, models, tokens and cost, where they differ."""
    duration: ValueChange
    """Both runs' durations in seconds, always (two runs seldom take the same time; it is no difference)."""

    @property
    def same(self) -> bool:
        return not (self.inputs or self.outputs or self.calls or self.totals) and all(s.same for s in self.steps)


def diff_runs(a: StoredRun, b: StoredRun) -> RunDiff:
    """The differences between two stored runs (A the older, usually; nothing here assumes so)."""
    same_flow = None if a.flow_hash is None or b.flow_hash is None else a.flow_hash == b.flow_hash
    return RunDiff(
        a=a, b=b, same_flow=same_flow,
        inputs=_changes(_dict(a.record.get("inputs")), _dict(b.record.get("inputs"))),
        outputs=_changes(_dict(a.record.get("outputs")), _dict(b.record.get("outputs"))),
        steps=_steps(_list(a.record.get("steps")), _list(b.record.get("steps"))),
        calls=_changes(_call_counts(a.record), _call_counts(b.record)),
        totals=_changes(_totals(a), _totals(b)),
        duration=ValueChange("duration", a.duration, b.duration),
    )


def _totals(run: StoredRun) -> dict[str, Any]:
    error = _dict(run.record.get("error"))
    return {
        "status": run.status, "error": f"{error.get('type')}: {str(error.get('message')).splitlines()[0] if error.get('message') else ''}"
        if error else None,
        "models": run.models, "prompt_tokens": run.prompt_tokens, "completion_tokens": run.completion_tokens,
        "total_tokens": run.total_tokens, "cost": run.cost,
    }


def _changes(a: dict[str, Any], b: dict[str, Any]) -> list[ValueChange]:
    names = list(a) + [name for name in b if name not in a]
    return [ValueChange(name, a.get(name), b.get(name)) for name in names if a.get(name) != b.get(name)]


def _call_counts(record: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for step in _list(record.get("steps")):
        for round_ in _list(_dict(step).get("rounds")):
            for call in _list(_dict(round_).get("calls")):
                name = str(_dict(call).get("name"))
                counts[name] = counts.get(name, 0) + 1
    return counts


def _steps(a: list[Any], b: list[Any]) -> list[StepDiff]:
    by_id_b = {str(_dict(step).get("id")): _dict(step) for step in b}
    ids = [str(_dict(step).get("id")) for step in a]
    ids += [step_id for step_id in by_id_b if step_id not in ids]
    by_id_a = {str(_dict(step).get("id")): _dict(step) for step in a}
    steps = []
    for step_id in ids:
        step_a, step_b = by_id_a.get(step_id), by_id_b.get(step_id)
        rounds_a = _list((step_a or {}).get("rounds"))
        rounds_b = _list((step_b or {}).get("rounds"))
        rounds = [_round(step_id, i, _at(rounds_a, i), _at(rounds_b, i))
                  for i in range(max(len(rounds_a), len(rounds_b)))]
        steps.append(StepDiff(step_id, _status(step_a), _status(step_b), rounds))
    return steps


def _round(step: str, index: int, a: dict[str, Any] | None, b: dict[str, Any] | None) -> RoundDiff:
    a, b = _comparable(a), _comparable(b)
    if a == b:
        return RoundDiff(step, index, a, b, None)
    if a is None or b is None:
        first = f"round {index + 1}: only in run {'B' if a is None else 'A'}"
        return RoundDiff(step, index, a, b, first, _unified(a, b))
    return RoundDiff(step, index, a, b, first_difference(a, b, f"round {index + 1}"), _unified(a, b))


_ALWAYS_DIFFERENT = TIMING_FIELDS | {"response_id", "slept"}
"""What differs between any two runs, even of the same flow, inputs and answers: left out of the rounds' diff."""


def _comparable(round_: dict[str, Any] | None) -> dict[str, Any] | None:
    """A round without what always differs between two runs: its timing, the response and call ids, the waits."""
    if round_ is None:
        return None
    kept = {key: value for key, value in round_.items() if key not in _ALWAYS_DIFFERENT}
    for key, drop in (("attempts", _ALWAYS_DIFFERENT), ("calls", _ALWAYS_DIFFERENT | {"id"})):  # a call's id too
        if isinstance(kept.get(key), list):
            kept[key] = [{k: v for k, v in item.items() if k not in drop} if isinstance(item, dict) else item
                         for item in kept[key]]
    if isinstance(kept.get("request"), dict) and isinstance(kept["request"].get("messages"), list):
        kept["request"] = {**kept["request"], "messages": [_without_call_ids(m) for m in kept["request"]["messages"]]}
    return kept


def _without_call_ids(message: Any) -> Any:
    """A request message without the tool call ids, which differ in every run (a tool result's
    `tool_call_id`, an assistant message's `tool_calls[].id`)."""
    if not isinstance(message, dict):
        return message
    kept = {key: value for key, value in message.items() if key != "tool_call_id"}
    if isinstance(kept.get("tool_calls"), list):
        kept["tool_calls"] = [{k: v for k, v in call.items() if k != "id"} if isinstance(call, dict) else call
                              for call in kept["tool_calls"]]
    return kept


_RUNS_WORDING = Wording(only_a="{path}: only in run A ({a})", only_b="{path}: only in run B ({b})",
                        lengths="{path}: {na} items in run A, {nb} in run B", values="{path}: A {a}, B {b}")


def first_difference(a: Any, b: Any, path: str) -> str:
    """Where two JSON values first differ, said briefly: `round 1.content: A 'x', B 'y'`."""
    return jsondiff.first_difference(a, b, path, _RUNS_WORDING)


def _unified(a: Any, b: Any) -> list[str]:
    return jsondiff.diff_lines(a, b, context=2, width=300, limit=MAX_DIFF_LINES, max_chars=_MAX_TEXT)


def _status(step: dict[str, Any] | None) -> str | None:
    return None if step is None else str(step.get("status"))


def _at(items: list[Any], index: int) -> dict[str, Any] | None:
    return _dict(items[index]) if index < len(items) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
