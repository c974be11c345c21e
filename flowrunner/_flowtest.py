"""Running a flow's declared test cases, each under its own cassette; results are plain objects.

Used by `flowrun test` (which prints them) and by the pytest plugin (which reports them). A case's
cassette is `<flow folder>/cassettes/<flow stem>/<case name>.yaml`. Replaying (record mode `none`)
is the default; recording needs a server.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

from ._cassette import EMPTY_HINT, RUN_HINT
from ._exceptions import CassetteMissError, FlowValidationError, Problem, UsageError
from ._expect import Failure, check_record
from ._model import Flow, TestCase
from ._pricing import Prices
from ._record import RunRecord

Outcome = Literal["passed", "failed"]

_SKIP_DIRS = {"cassettes", "node_modules", "__pycache__", "site-packages"}
_STEPS_LINE = re.compile(r"^steps\s*:", re.MULTILINE)


@dataclass(frozen=True)
class CaseResult:
    """What came of one test case: passed, or failed with the reasons."""

    flow: Flow
    case: TestCase
    outcome: Outcome
    failures: tuple[Failure, ...] = ()
    cassette: Path | None = None
    record: RunRecord | None = field(default=None, compare=False, repr=False)
    seconds: float = 0.0

    @property
    def id(self) -> str:
        """`flows/weather.yaml::boston`, as the summary and `-k` know the case."""
        return f"{self.flow.path}::{self.case.name}"

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    def report(self) -> str:
        """The failures, one per line (continuation lines indented), for people."""
        return "\n".join(str(f) for f in self.failures)


def cassette_for(flow: Flow, case: TestCase) -> Path:
    """Where a case's cassette lives: `cassettes/<flow stem>/<case name>.yaml` beside the flow."""
    return flow.path.parent / "cassettes" / flow.path.stem / f"{case.name}.yaml"


Runner = Literal["flowrun", "pytest"]
"""Who runs a case, so that a hint names that tool's command and options (`--flowrun-base-url` in pytest)."""

SERVER_OPTION: dict[str, str] = {"flowrun": "--base-url", "pytest": "--flowrun-base-url"}


def record_command(flow: Flow, case: TestCase, runner: Runner = "flowrun") -> str:
    if runner == "pytest":
        return f"pytest {flow.path}::{case.name} --record-mode all --flowrun-base-url URL   (or with OPENAI_API_KEY set)"
    return f"flowrun test {flow.path} -k {case.name} --record --base-url URL   (or with OPENAI_API_KEY set)"


def selected(flow: Flow, keyword: str | None) -> list[TestCase]:
    """The flow's cases whose `<flow stem>::<case name>` contains `keyword` (case-insensitive)."""
    if not keyword:
        return list(flow.tests)
    key = keyword.lower()
    return [case for case in flow.tests if key in f"{flow.path.stem}::{case.name}".lower()]


def run_case(flow: Flow, case: TestCase, *, record_mode: str = "none", base_url: str | None = None,
             api_key: str | None = None, timeout: float = 600.0, cassette: Path | None = None,
             runner: Runner = "flowrun", prices: Prices | None = None) -> CaseResult:
    """Run one case under its cassette and check its expectations; never raises for a failing case.
    `runner` is the tool the user runs it with: hints name its command and options."""
    from ._cassette import check_recordable, use_cassette
    from ._engine import Engine
    from ._inputs import resolve_inputs
    from ._transport import OpenAITransport

    cassette = cassette or cassette_for(flow, case)
    started = time.perf_counter()

    def failed(message: str) -> CaseResult:
        return CaseResult(flow, case, "failed", (Failure(case.location, case.name, message),), cassette,
                          None, time.perf_counter() - started)

    try:
        resolve_inputs(flow, case.inputs)  # e.g. an `env:` input whose variable is unset or not of its type
    except UsageError as exc:
        return failed(str(exc))
    if record_mode == "none" and not cassette.is_file():
        return failed(f"no cassette at {cassette} to replay\n  hint: record it against a server: "
                      f"{record_command(flow, case, runner)}")
    check_recordable(cassette, record_mode, bool(base_url or api_key),
                     f"give {SERVER_OPTION[runner]} URL (e.g. the test server, `python -m flowrunner.testing.server`) "
                     "or set OPENAI_API_KEY")
    try:
        with use_cassette(cassette, record_mode), \
                OpenAITransport(base_url=base_url, api_key=api_key, timeout=timeout) as transport:
            record = Engine(transport, prices=prices).run(flow, case.inputs)
    except UsageError as exc:  # an unreadable cassette, an unwritable folder, a case input the run refuses
        return failed(str(exc))
    if isinstance(record.exception, CassetteMissError):
        hint = f"  hint: the flow or this case changed since recording; re-record it: {record_command(flow, case, runner)}"
        empty = f"  hint: record it: {record_command(flow, case, runner)}"
        return CaseResult(flow, case, "failed", (Failure(case.location, case.name,
                          str(record.exception).replace(RUN_HINT, hint).replace(EMPTY_HINT, empty)),), cassette,
                          record, time.perf_counter() - started)
    failures = tuple(check_record(case.checks, record))
    return CaseResult(flow, case, "failed" if failures else "passed", failures, cassette, record,
                      time.perf_counter() - started)


def looks_like_flow(path: Path) -> bool:
    """A YAML file whose top level has `steps:` (cheap: no parsing, so a broken flow still counts)."""
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError:
        return False
    return bool(_STEPS_LINE.search(text))


def find_flows(paths: Iterable[str | Path]) -> list[Path]:
    """Flow files among `paths`: files as given; folders searched recursively for YAML flows,
    skipping `cassettes/` folders and hidden ones."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for candidate in sorted(path.rglob("*")):
                relative = candidate.relative_to(path).parts
                if (candidate.suffix in (".yaml", ".yml") and candidate.is_file()
                        and not any(p in _SKIP_DIRS or p.startswith(".") for p in relative[:-1])
                        and looks_like_flow(candidate)):
                    found.append(candidate)
        elif path.exists():
            found.append(path)
        else:
            raise FlowValidationError([Problem(None, f"no such file or folder: {path}",
                                               "give flow files, or folders that hold them")])
    return list(dict.fromkeys(found))
