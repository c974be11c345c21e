"""A flow's `tests:` section, schema-valid, into TestCase objects, with every mistake located.

The schema has checked the shape; this checks what the schema cannot: that inputs, functions,
outputs and steps named in a case exist, that regexes compile, that `schema` matchers are JSON
Schemas, that input values fit their inputs, and that test names are unique (each names a cassette).
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Callable

from jsonschema import Draft202012Validator

from ._exceptions import Problem
from ._durations import parse_duration
from ._expect import (MATCHER_NAMES, BoundCheck, CallsCheck, Check, ExpectedCall, Expectation, FinishReasonCheck,
                      Matcher, OutputCheck, RoundsCheck, StatusCheck)
from ._model import InputSpec, TestCase
from ._schema import describe, error_problems
from ._yaml import JsonPath, Positions, format_path

Suggest = Callable[[str, list[str], str, str], str]
"""The loader's 'did you mean' helper: (name, known, what the known are, what to say when none)."""


class TestCaseBuilder:
    """Builds the TestCases of one flow; `problems` collects what is wrong, located."""

    __test__ = False

    def __init__(self, positions: Positions, inputs: dict[str, InputSpec], functions: list[str],
                 outputs: list[str], steps: list[str], suggest: Suggest):
        self.pos = positions
        self.inputs = inputs
        self.functions = functions
        self.outputs = outputs
        self.steps = steps
        self.suggest = suggest
        self.problems: list[Problem] = []

    def problem(self, path: JsonPath, message: str, hint: str | None = None, *, at_key: bool = False) -> None:
        location = self.pos.key(path) if at_key else self.pos.value(path)
        self.problems.append(Problem(location, message, hint))

    def build(self, raw_tests: list[dict[str, Any]]) -> tuple[TestCase, ...]:
        seen: dict[str, int] = {}
        cases = []
        for index, raw in enumerate(raw_tests):
            base: JsonPath = ("tests", index)
            name = raw["name"]
            if name in seen:
                line = self.pos.value(("tests", seen[name], "name")).line
                self.problem(base + ("name",), f"duplicate test name {name!r} (tests[{seen[name]}] on line {line} "
                             "has it too)", "test names must be unique: each names its cassette file")
            seen.setdefault(name, index)
            cases.append(TestCase(name=name, inputs=self._inputs(raw.get("inputs", {}), base + ("inputs",)),
                                  checks=self._checks(raw.get("expect", {}), base + ("expect",)),
                                  description=raw.get("description"), location=self.pos.value(base)))
        return tuple(cases)

    def _inputs(self, values: dict[str, Any], base: JsonPath) -> dict[str, Any]:
        for name, value in values.items():
            spec = self.inputs.get(name)
            if spec is None:
                self.problem(base + (name,), f"unknown input {name!r} in {format_path(base)}",
                             self.suggest(name, list(self.inputs), "declared inputs",
                                          "the flow declares no inputs; declare it under inputs:"), at_key=True)
                continue
            if not (value is None and spec.default is None):  # `default: null` lets an input be null
                for error in Draft202012Validator(spec.schema).iter_errors(value):
                    self.problems.extend(error_problems(error, self.pos, base + (name,)))
        for spec in self.inputs.values():
            if spec.required and spec.name not in values:
                self.problem(base if base in self.pos else base[:-1],
                             f"{format_path(base[:-1])} does not give input {spec.name!r}, which has no default",
                             f"add it: inputs: {{{spec.name}: ...}}")
        return dict(values)

    def _checks(self, expect: dict[str, Any], base: JsonPath) -> tuple[Check, ...]:
        checks: list[Check] = []
        error = self._expectation(expect["error"], base + ("error",)) if "error" in expect else None
        status = expect.get("status", "succeeded")
        if error is not None and status != "failed":
            self.problem(base + ("error",), "`error` is checked only when the run is expected to fail",
                         "add status: failed", at_key=True)
        checks.append(StatusCheck(status, error, self.pos.key(base + ("status",)) if "status" in expect
                                  else self.pos.key(base[:-1])))
        for name, value in expect.get("outputs", {}).items():
            path = base + ("outputs", name)
            if name not in self.outputs:
                self.problem(path, f"unknown output {name!r} in {format_path(base)}.outputs",
                             self.suggest(name, self.outputs, "the flow's outputs", "the flow has no outputs"),
                             at_key=True)
            checks.append(OutputCheck(name, self._expectation(value, path), self.pos.key(path)))
        if "calls" in expect:
            calls = tuple(self._call(raw, base + ("calls", i)) for i, raw in enumerate(expect["calls"]))
            checks.append(CallsCheck(calls, self.pos.key(base + ("calls",))))
        rounds = expect.get("rounds")
        if isinstance(rounds, int):
            checks.append(RoundsCheck(rounds, None, self.pos.value(base + ("rounds",))))
        elif isinstance(rounds, dict):
            for step, count in rounds.items():
                if step not in self.steps:
                    self.problem(base + ("rounds", step), f"unknown step {step!r} in {format_path(base)}.rounds",
                                 self.suggest(step, self.steps, "step ids", "the flow has no such step"),
                                 at_key=True)
                checks.append(RoundsCheck(count, step, self.pos.value(base + ("rounds", step))))
        if "finish_reason" in expect:
            checks.append(FinishReasonCheck(self._expectation(expect["finish_reason"], base + ("finish_reason",))))
        for measure in ("cost", "latency", "tokens"):
            if measure in expect:
                checks.append(self._bounds(measure, expect[measure], base + (measure,)))
        return tuple(checks)

    def _bounds(self, measure: str, raw: dict[str, Any], path: JsonPath) -> BoundCheck:
        """`{min: ..., max: ...}` of a cost (dollars), latency (a duration) or tokens (a count)."""
        bounds: dict[str, float | None] = {"min": None, "max": None}
        for key in bounds:
            if key not in raw:
                continue
            try:
                bounds[key] = parse_duration(raw[key]) if measure == "latency" else float(raw[key])
            except ValueError as exc:
                self.problem(path + (key,), str(exc), "write something like 500ms, 5s or 1m")
        low, high = bounds["min"], bounds["max"]
        if low is not None and high is not None and low > high:
            self.problem(path + ("min",), f"{format_path(path)}: min ({raw['min']}) is more than max ({raw['max']})",
                         "no run could pass: swap them")
        return BoundCheck(measure, low, high, self.pos.key(path))

    def _call(self, raw: dict[str, Any], base: JsonPath) -> ExpectedCall:
        name = raw["name"]
        if name not in self.functions:
            self.problem(base + ("name",), f"{format_path(base)} names function {name!r}, which the flow does not "
                         "declare", self.suggest(name, self.functions, "declared functions",
                                                 "the flow declares no functions"))
        step = raw.get("step")
        if step is not None and step not in self.steps:
            self.problem(base + ("step",), f"unknown step {step!r} in {format_path(base)}",
                         self.suggest(step, self.steps, "step ids", "the flow has no such step"))
        arguments = tuple((arg, self._expectation(value, base + ("arguments", arg)),
                           self.pos.key(base + ("arguments", arg)))
                          for arg, value in raw.get("arguments", {}).items())
        return ExpectedCall(name, arguments, step, self.pos.value(base))

    def _expectation(self, value: Any, path: JsonPath) -> Expectation:
        """A plain value is `equals`; a mapping with a matcher key is matchers, each checked."""
        if not (isinstance(value, dict) and value and (any(key in MATCHER_NAMES for key in value) or
                                                       all(_misspelt_matcher(key) for key in value))):
            return Expectation((Matcher("equals", value, self.pos.value(path)),))
        matchers = []
        for kind, expected in value.items():
            at = path + (kind,)
            if kind not in MATCHER_NAMES:
                close = _misspelt_matcher(kind)
                guess = f"did you mean {close!r}? " if close else ""
                self.problem(at, f"{kind!r} is not a matcher (in {format_path(path)})",
                             f"{guess}matchers are: {', '.join(MATCHER_NAMES)}; to expect a mapping, write "
                             "{equals: {...}}", at_key=True)
                continue
            if kind == "regex":
                self._check_regex(expected, at)
            elif kind == "schema":
                self._check_schema(expected, at)
            matchers.append(Matcher(kind, expected, self.pos.value(at)))
        return Expectation(tuple(matchers))

    def _check_regex(self, pattern: Any, path: JsonPath) -> None:
        if not isinstance(pattern, str):
            self.problem(path, f"a regex must be text, got {describe(pattern)}")
            return
        try:
            re.compile(pattern)
        except re.error as exc:
            self.problem(path, f"invalid regex {pattern!r}: {exc}",
                         "Python's re syntax; quote the pattern in YAML ('...') so backslashes stay")

    def _check_schema(self, schema: Any, path: JsonPath) -> None:
        meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
        for error in meta.iter_errors(schema):
            for problem in error_problems(error, self.pos, path):
                self.problems.append(Problem(problem.location, f"invalid JSON Schema: {problem.message}",
                                             problem.hint or "see https://json-schema.org/understanding-json-schema"))



def _misspelt_matcher(key: Any) -> str | None:
    """The matcher `key` looks like a typo of (`contain`, `regexp`), or None.

    A mapping whose every key is a matcher or one of these is read as matchers, so a lone typo is an
    error instead of a silent `equals` against a one-key mapping."""
    if not isinstance(key, str):
        return None
    close = difflib.get_close_matches(key.lower(), MATCHER_NAMES, n=1, cutoff=0.75)
    return close[0] if close else None
