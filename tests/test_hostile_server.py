"""A hostile server: generated answers (tests/hostile.py) through `flowrun run`, `flowrun run --json`
and `flowrun batch`, over real HTTP against the project's test server.

Whatever a server sends (a wrong type at any position of a completion or a stream chunk, JSON nested
100,000 deep, integers of thousands of digits, lone surrogates, absurd rate-limit headers, truncated
or trickled bodies, refusals, filtered, cut and audio answers), flowrun
- exits 0 or 1, with a message on stderr when it fails, and never a traceback or a bare Python
  exception name;
- finishes (each run within HANG seconds, each batch within BATCH_TIMEOUT);
- with --json, prints a record whose error, if any, is one of flowrunner's own;
- in a batch, writes one valid UTF-8 JSON result line per input, whatever the other inputs met;
- never passes off a refusal, a filtered answer or an empty one as a success, says when an answer
  was cut at the token limit, and gives an audio answer's transcript as its text.

Every case of a family shares one server, one `flowrun batch` over all its inputs per flow, and one
process running each `flowrun run` command line through the CLI's main() (tests/_hostile_runner.py),
so some 1,300 runs take seconds, not the 15 minutes as many processes would. The cases come from a
fixed, derandomized hypothesis profile: the same cases on every run, so a failure reproduces; each
failure is reported with the reply that caused it (its case id, family, the position and value).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

import hostile
from conftest import clean_env

pytestmark = pytest.mark.server

EXAMPLES = 1  # hypothesis examples; each draws a value for every position and family (~330 cases)
HANG = 10.0  # seconds one run may take before it counts as hung (the longest legitimate one takes ~1 s)
MAX_HANGS = 4  # hung runs before the runner gives up on the rest (each costs HANG seconds)
BATCH_TIMEOUT = 50.0
RUNNER = Path(__file__).resolve().parent / "_hostile_runner.py"
SHOWN = 40  # failures listed in an assertion message; the counts by family cover the rest

TRACEBACK = "Traceback (most recent call last)"
# A message that is only an exception's name (and maybe its bare repr): "KeyError: 'choices'".
BARE = re.compile(r"^(?:error(?: in step '[^']*')?: )?(?:[A-Za-z_][\w.]*)?(?:Error|Exception|Exit|Interrupt)\b[^\n]*$")

PLAIN_FLOW = """\
    name: hostile
    model: gpt-4o-mini
    retry: {max_attempts: 2, backoff: {initial: 1ms, max: 1ms}, max_elapsed: 5s}
    inputs:
      case: {type: string}
    functions:
      lookup:
        entry: hostile_tools:lookup
        description: Look a place up.
        parameters: {type: object, properties: {location: {type: string}}}
    steps:
      - id: answer
        functions: [lookup]
        max_rounds: 2
        messages:
          - {role: user, content: "{{ inputs.case }}"}
    outputs:
      answer: "{{ steps.answer.content }}"
"""
TOOLS = """\
def lookup(location="nowhere"):
    return f"{location}: sunny"
"""


@dataclass
class World:
    cases: list[hostile.Case]
    runs: dict[tuple[str, str], dict[str, Any]]  # (case id, "run" or "json") -> the runner's line
    batches: dict[bool, dict[str, Any]]  # streamed? -> how that batch went
    seconds: float


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    started = time.monotonic()
    cases = hostile.generate(EXAMPLES)
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "hostile_tools.py").write_text(TOOLS)
    flows = {False: folder / "plain.yaml", True: folder / "streamed.yaml"}
    flows[False].write_text(textwrap.dedent(PLAIN_FLOW))
    flows[True].write_text(textwrap.dedent(PLAIN_FLOW).replace("max_rounds: 2\n", "max_rounds: 2\n    stream: true\n"))
    with hostile.CaseServer(cases) as server:
        common = ["--base-url", server.base_url, "--timeout", "5"]
        batches = {stream: _start_batch(folder, flows[stream], [c for c in cases if c.stream == stream], common)
                   for stream in (False, True)}
        jobs = {mode: [{"id": case.id, "argv": [str(flows[case.stream]), "-i", f"case={case.id}", *common,
                                                 *(["--json"] if mode == "json" else [])]} for case in cases]
                for mode in ("run", "json")}
        runs: dict[tuple[str, str], dict[str, Any]] = {}
        for mode, lines in _run_all(folder, jobs).items():
            runs.update({(line["id"], mode): line for line in lines})
        finished = {stream: _finish_batch(batch) for stream, batch in batches.items()}
    yield World(cases, runs, finished, time.monotonic() - started)


def _start_batch(folder: Path, flow: Path, cases: list[hostile.Case], common: list[str]) -> dict[str, Any]:
    name = flow.stem
    inputs, out = folder / f"{name}.inputs.jsonl", folder / f"{name}.results.jsonl"
    inputs.write_text("".join(json.dumps({"id": c.id, "case": c.id}) + "\n" for c in cases))
    process = subprocess.Popen([sys.executable, "-m", "flowrunner._cli", "batch", str(flow), "--inputs", str(inputs),
                                "--out", str(out), *common], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=clean_env(), cwd=folder)
    return {"process": process, "out": out, "cases": cases, "started": time.monotonic()}


def _finish_batch(batch: dict[str, Any]) -> dict[str, Any]:
    process: subprocess.Popen[bytes] = batch["process"]
    try:
        stdout, stderr = process.communicate(timeout=max(1.0, BATCH_TIMEOUT - (time.monotonic() - batch["started"])))
        code: int | None = process.returncode
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        code = None
    return {"code": code, "stdout": stdout.decode("utf-8", "replace"), "stderr": stderr.decode("utf-8", "replace"),
            "results": batch["out"].read_bytes() if batch["out"].exists() else b"", "cases": batch["cases"]}


def _run_all(folder: Path, jobs: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Every job of each mode through the runner, the modes side by side; after a hung job the runner
    starts again with the next one, up to MAX_HANGS times, and the jobs not run then get no line."""
    state = {mode: {"first": 0, "hangs": 0, "process": None, "lines": []} for mode in jobs}
    for mode, mode_jobs in jobs.items():
        (folder / f"{mode}.jobs.json").write_text(json.dumps(mode_jobs))
    while True:
        for mode, s in state.items():
            if s["process"] is None and s["first"] < len(jobs[mode]) and s["hangs"] <= MAX_HANGS:
                out = folder / f"{mode}.runs.{s['first']}.jsonl"
                s["out"] = out
                with (folder / f"{mode}.runner.log").open("ab") as log:  # the child keeps its own copy
                    s["process"] = subprocess.Popen(
                        [sys.executable, str(RUNNER), str(folder / f"{mode}.jobs.json"), str(out), str(s["first"]),
                         str(HANG)], stdout=subprocess.DEVNULL, stderr=log, env=clean_env(), cwd=folder)
        running = [s for s in state.values() if s["process"] is not None]
        if not running:
            return {mode: s["lines"] for mode, s in state.items()}
        for s in running:
            try:
                s["process"].wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            lines = [json.loads(line) for line in s["out"].read_text(encoding="utf-8").splitlines() if line]
            s["lines"].extend(lines)
            s["first"] += len(lines)
            s["hangs"] += sum(1 for line in lines if line.get("hung"))
            if s["process"].returncode not in (0, 3) or not lines:
                s["first"] = 10**9  # the runner itself failed: the jobs left get no line, and fail below
            s["process"] = None


# -- the checks ---------------------------------------------------------------------------------------

def flowrunner_errors() -> set[str]:
    """The names of flowrunner's own exceptions (a result's error type must be one of them)."""
    from flowrunner import _exceptions

    return {name for name, value in vars(_exceptions).items()
            if isinstance(value, type) and issubclass(value, _exceptions.FlowrunnerError)}


def output_problems(stdout: str, stderr: str, code: int | None) -> list[str]:
    """What is wrong with what a flowrun process showed, whatever it was asked."""
    problems = []
    if code not in (0, 1):
        problems.append(f"exit status {code}, not 0 or 1")
    for name, text in (("stderr", stderr), ("stdout", stdout)):
        if TRACEBACK in text:
            problems.append(f"a traceback on {name}: ...{_tail(text[text.index(TRACEBACK):], 300)}")
    if code == 1 and not stderr.strip():
        problems.append("failed with nothing on stderr")
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if len(lines) == 1 and BARE.match(lines[0]):
        problems.append(f"only a bare exception on stderr: {_tail(stderr, 200)}")
    return problems


def run_problems(case: hostile.Case, mode: str, line: dict[str, Any] | None, errors: set[str]) -> list[str]:
    if line is None:
        return ["not run (the runner gave up after earlier hangs or died)"]
    if line.get("hung"):
        return [f"still running after {HANG:g} s (stderr so far: {_tail(line['stderr'], 200)!r})"]
    stdout, stderr, code = line["stdout"], line["stderr"], line["code"]
    problems = output_problems(stdout, stderr, code)
    record = None
    if mode == "json" and code in (0, 1) and TRACEBACK not in stderr:
        try:
            record = json.loads(stdout)
        except ValueError:
            problems.append(f"--json printed no JSON record: {_tail(stdout, 200)!r}")
        else:
            problems += record_problems(record, code, errors)
    problems += kind_problems(case, mode, code, stdout, stderr, record)
    return problems


def record_problems(record: Any, code: int | None, errors: set[str]) -> list[str]:
    if not isinstance(record, dict) or record.get("status") not in ("succeeded", "failed"):
        return [f"the --json record has no status: {_tail(json.dumps(record), 200)}"]
    problems = []
    if (record["status"] == "succeeded") != (code == 0):
        problems.append(f"record status {record['status']} with exit status {code}")
    error = record.get("error")
    if record["status"] == "failed" and not (isinstance(error, dict) and error.get("type") in errors):
        problems.append(f"the record's error is not one of flowrunner's: {_tail(json.dumps(error), 200)}")
    return problems


def kind_problems(case: hostile.Case, mode: str, code: int | None, stdout: str, stderr: str,
                  record: dict[str, Any] | None) -> list[str]:
    """The answers that must not pass silently (tests/hostile.py `Case.expect`)."""
    if case.expect in ("refusal", "content_filter", "empty_reasoning") and code == 0:
        return [f"a {case.expect} answer passed as a success (exit 0)"]
    if case.expect == "length" and code == 0 and not stderr.strip():
        return ["an answer cut at the token limit passed without a word on stderr"]
    if case.expect == "audio":
        shown = stdout if mode == "run" else json.dumps((record or {}).get("outputs"))
        if code != 0 or (case.transcript or "") not in shown:
            return [f"an audio answer's transcript is not the answer (exit {code}, stdout {_tail(stdout, 120)!r})"]
    return []


def batch_problems(batch: dict[str, Any], errors: set[str]) -> tuple[list[str], dict[str, list[str]]]:
    """What is wrong with a batch as a whole, and with each case's result line."""
    overall = output_problems(batch["stdout"], batch["stderr"], batch["code"])
    if batch["code"] is None:
        overall.append(f"still running after {BATCH_TIMEOUT:g} s")
    try:
        text = batch["results"].decode("utf-8")
    except UnicodeDecodeError as exc:
        overall.append(f"the results file is not valid UTF-8 ({exc})")
        text = batch["results"].decode("utf-8", "replace")
    seen: Counter[str] = Counter()
    per_case: dict[str, list[str]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        try:
            line = json.loads(raw)
            key = line["key"]
        except (ValueError, KeyError, TypeError):
            overall.append(f"result line {number} is not a JSON result: {_tail(raw, 200)!r}")
            continue
        seen[key] += 1
        problems = per_case.setdefault(key, [])
        status, error = line.get("status"), line.get("error")
        if status not in ("succeeded", "failed"):
            problems.append(f"result status {status!r}")
        if status == "failed" and not (isinstance(error, dict) and error.get("type") in errors):
            problems.append(f"the result's error is not one of flowrunner's: {_tail(json.dumps(error), 200)}")
        if TRACEBACK in raw:
            problems.append("a traceback in the result line")
        case = next((c for c in batch["cases"] if c.id == key), None)
        if case is not None and case.expect in ("refusal", "content_filter", "empty_reasoning") and status == "succeeded":
            problems.append(f"a {case.expect} answer written down as succeeded")
        if case is not None and case.expect == "audio" and (
                status != "succeeded" or (case.transcript or "") not in json.dumps(line.get("outputs"))):
            problems.append(f"an audio answer's transcript is not the output: {_tail(raw, 200)}")
    for case in batch["cases"]:
        if seen[case.id] != 1:
            per_case.setdefault(case.id, []).append(f"{seen[case.id]} result lines, not 1")
    return overall, {key: problems for key, problems in per_case.items() if problems}


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def report(cases: list[hostile.Case], failures: dict[str, list[str]], what: str) -> str:
    by_id = {case.id: case for case in cases}
    families = Counter(by_id[key].family for key in failures if key in by_id)
    lines = [f"{len(failures)} of {len(cases)} hostile answers broke {what} "
             f"(by family: {', '.join(f'{n} {f}' for f, n in families.most_common())}):"]
    for key in sorted(failures)[:SHOWN]:
        case = by_id.get(key)
        lines.append(f"- {case.reproducer(240) if case else key}\n    " + "\n    ".join(failures[key]))
    if len(failures) > SHOWN:
        lines.append(f"... and {len(failures) - SHOWN} more")
    return "\n".join(lines)


# -- the tests ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["run", "json"], ids=["flowrun run", "flowrun run --json"])
def test_every_hostile_answer_ends_a_run_cleanly(world: World, mode: str) -> None:
    errors = flowrunner_errors()
    failures = {}
    for case in world.cases:
        problems = run_problems(case, mode, world.runs.get((case.id, mode)), errors)
        if problems:
            failures[case.id] = problems
    command = "flowrun run" + (" --json" if mode == "json" else "")
    assert not failures, report(world.cases, failures, command)


@pytest.mark.parametrize("stream", [False, True], ids=["plain step", "streamed step"])
def test_a_batch_writes_one_line_per_input_whatever_the_server_sends(world: World, stream: bool) -> None:
    batch = world.batches[stream]
    overall, failures = batch_problems(batch, flowrunner_errors())
    assert not overall, "flowrun batch: " + "; ".join(overall) + f"\nstderr: {_tail(batch['stderr'], 2000)}"
    assert not failures, report(batch["cases"], failures, "flowrun batch")


def test_the_cases_cover_every_family_and_position(world: World) -> None:
    # Not a tautology: a strategy that stops drawing (or a sweep that skips positions) shows here.
    families = Counter(case.family for case in world.cases)
    assert set(families) == {"kind", "completion-position", "chunk-position", "deep-huge", "surrogate",
                             "stream-shape", "headers", "body"}
    for kind in ("text", "tool_call"):
        body = hostile.COMPLETIONS[kind][0]
        swept = {case.note.split(" = ")[0] for case in world.cases if case.family == "completion-position"}
        assert {f"{kind} at {list(path)}" for path in hostile.positions(body)} <= swept
    assert len({case.reproducer(10**9) for case in world.cases}) == len(world.cases)
