"""flowrunner's pytest plugin (entry point `pytest11`): the `flowrun` fixture, `--record-mode`, and flow
files' own `tests:` collected as pytest items, so `pytest flows/` runs them.

Importing this module is cheap: pytest loads it in every run of every project where flowrunner is
installed, so flowrunner's own modules (and openai, vcrpy) are imported only when used.
"""

from __future__ import annotations

import importlib.util
import os
import re
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import pytest

if TYPE_CHECKING:
    from ._flowtest import CaseResult
    from ._model import Flow, TestCase
    from ._record import RunRecord

_MODES = ("none", "once", "new_episodes", "all")  # _cassette.RECORD_MODES: not imported, to keep this cheap
_STEPS = re.compile(r"^steps\s*:", re.MULTILINE)
_TESTS = re.compile(r"^tests\s*:", re.MULTILINE)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flowrunner", "flowrunner: flows under cassettes")
    # pytest-recording adds the same option, with the same modes plus `rewrite`: leave it to that
    # plugin when it is installed (whichever of us loads first, two definitions would clash).
    if importlib.util.find_spec("pytest_recording") is None:
        try:
            group.addoption("--record-mode", dest="record_mode", default="none", choices=_MODES,
                            help="cassettes: none (default) replays only; once records missing cassettes; "
                                 "new_episodes adds missing requests; all re-records")
        except ValueError:  # another plugin defined it after all: reuse it
            pass
    group.addoption("--flowrun-base-url", dest="flowrun_base_url", default=None, metavar="URL",
                    help="server to record against (default: $OPENAI_BASE_URL; OpenAI with $OPENAI_API_KEY)")
    parser.addini("flowrunner_collect", type="bool", default=True,
                  help="collect the tests: of flow YAML files as test items (default: true)")


def _record_mode(config: pytest.Config) -> str:
    mode = str(config.getoption("record_mode", default="none") or "none")
    return "all" if mode == "rewrite" else mode  # pytest-recording's `rewrite` is our `all`


def _server(config: pytest.Config) -> tuple[str | None, str | None]:
    base_url = config.getoption("flowrun_base_url", default=None) or os.environ.get("OPENAI_BASE_URL") or None
    return base_url, os.environ.get("OPENAI_API_KEY") or None


# -- the fixture --------------------------------------------------------------------------------


class FlowRunner:
    """What the `flowrun` fixture gives: call it with a flow (path or Flow) and inputs to get the
    RunRecord; every call of one test shares the test's cassette, open until the test ends."""

    def __init__(self, cassette: Path, record_mode: str, base_url: str | None, api_key: str | None,
                 folder: Path):
        self.cassette = cassette
        """The cassette: `<test folder>/cassettes/<test module>/<test name>.yaml`; set it before the first call."""
        self.record_mode = record_mode
        self.base_url = base_url
        self.api_key = api_key
        self.folder = folder
        self._stack = ExitStack()
        self._opened = False

    def __call__(self, flow: str | Path | Flow, inputs: Mapping[str, Any] | None = None, *,
                 check: bool = True, model: str | None = None) -> RunRecord:
        """Run the flow; with `check` (the default) a failed run fails the test with the run's error.

        A failure is reported once, at the line of the test that made this call (this module's frames
        are hidden, and no exception is chained to it)."""
        __tracebackhide__ = True
        from ._engine import Engine
        from ._exceptions import FlowrunnerError, FlowValidationError
        from ._loader import load_flow
        from ._transport import OpenAITransport

        problem = None
        try:
            if isinstance(flow, (str, Path)):
                path = Path(flow)
                flow = load_flow(path if path.is_absolute() or path.exists() else self.folder / path)
            self._open()
            record = Engine(OpenAITransport(base_url=self.base_url, api_key=self.api_key), model=model).run(
                flow, dict(inputs or {}))
        except FlowValidationError as exc:
            problem = f"invalid flow:\n{exc}"
        except FlowrunnerError as exc:
            problem = _for_pytest(str(exc))
        if problem is not None:
            pytest.fail(problem)  # outside the except: not "during handling of the above exception"
        if check and record.status == "failed":
            step = (record.error or {}).get("step")
            pytest.fail(f"flow {record.flow!r} failed{f' in step {step!r}' if step else ''}: "
                        f"{_for_pytest(str((record.error or {}).get('message')))}")
        return record

    def _open(self) -> None:
        if self._opened:
            return
        from ._cassette import check_recordable, use_cassette
        from ._exceptions import ConfigError

        if self.record_mode == "none" and not self.cassette.is_file():
            raise ConfigError(f"no cassette at {self.cassette} to replay (--record-mode none)\n"
                              "  hint: record it against a server: pytest --record-mode once with "
                              "OPENAI_BASE_URL (or --flowrun-base-url) or OPENAI_API_KEY set")
        check_recordable(self.cassette, self.record_mode, bool(self.base_url or self.api_key),
                         "set OPENAI_BASE_URL (or pytest --flowrun-base-url URL) or OPENAI_API_KEY")
        self._stack.enter_context(use_cassette(self.cassette, self.record_mode))
        self._opened = True

    def close(self) -> None:
        self._stack.close()


def _for_pytest(message: str) -> str:
    """A run's error with its hint in pytest's terms: options are `--flowrun-base-url`, `--record-mode`."""
    from ._cassette import EMPTY_HINT, RUN_HINT

    return message.replace(RUN_HINT, _MISS_HINT).replace(EMPTY_HINT, _EMPTY_HINT)


_MISS_HINT = ("  hint: the flow or its inputs changed since recording: re-record with pytest --record-mode "
              "new_episodes (keeps the rest) or all, against a server: --flowrun-base-url URL or OPENAI_API_KEY")
_EMPTY_HINT = ("  hint: record it: pytest --record-mode all against a server: --flowrun-base-url URL or "
               "OPENAI_API_KEY")


@pytest.fixture
def flowrun(request: pytest.FixtureRequest) -> Iterator[FlowRunner]:
    """Run flows under a cassette named after the test: `flowrun("flows/weather.yaml", {"question": ...})`."""
    folder = request.path.parent
    name = _UNSAFE.sub("-", request.node.name).strip("-")
    cassette = folder / "cassettes" / request.path.stem / f"{name}.yaml"
    base_url, api_key = _server(request.config)
    runner = FlowRunner(cassette, _record_mode(request.config), base_url, api_key, folder)
    try:
        yield runner
    finally:
        runner.close()


# -- flows' own tests as pytest items -----------------------------------------------------------


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix not in (".yaml", ".yml") or not parent.config.getini("flowrunner_collect"):
        return None
    try:
        relative = file_path.relative_to(parent.config.rootpath).parts
    except ValueError:
        relative = file_path.parts
    if "cassettes" in relative[:-1]:
        return None
    try:
        text = file_path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError:
        return None
    if not (_STEPS.search(text) and _TESTS.search(text)):
        return None
    flow_file: FlowFile = FlowFile.from_parent(parent, path=file_path)
    return flow_file


class FlowFile(pytest.File):
    """A flow YAML file with `tests:`; its cases are the items."""

    def collect(self) -> Iterator[FlowCase]:
        from ._exceptions import FlowValidationError
        from ._loader import load_flow

        try:
            flow = load_flow(self.path)
        except FlowValidationError as exc:
            raise self.CollectError(f"invalid flow:\n{exc}") from None
        for case in flow.tests:
            yield FlowCase.from_parent(self, name=case.name, flow=flow, case=case)


class FlowCaseFailed(Exception):
    """A flow's test case did not pass; the result says why."""

    def __init__(self, result: CaseResult):
        self.result = result
        super().__init__(result.report())


class FlowCase(pytest.Item):
    """One case of a flow's `tests:`, run under its own cassette like `flowrun test` runs it."""

    def __init__(self, *, flow: Flow, case: TestCase, **kwargs: Any):
        super().__init__(**kwargs)
        self.flow = flow
        self.case = case

    def runtest(self) -> None:
        from ._flowtest import run_case

        base_url, api_key = _server(self.config)
        result = run_case(self.flow, self.case, record_mode=_record_mode(self.config), base_url=base_url,
                          api_key=api_key, runner="pytest")
        if not result.passed:
            raise FlowCaseFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | Any:
        from ._exceptions import FlowrunnerError

        if isinstance(excinfo.value, FlowCaseFailed):
            return excinfo.value.result.report()
        if isinstance(excinfo.value, FlowrunnerError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.case.location.line - 1 if self.case.location else None
        # The domain is what pytest's failure header shows; pytest -v shows the node id.
        return self.path, line, self.case.name
