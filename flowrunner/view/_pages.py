"""The pages of `flowrun view`, rendered on the server from Jinja templates with autoescaping on.

Everything a run holds came from outside (the model's answers, function results, a flow's inputs), so
no value reaches the page unescaped: templates never mark data safe, and the server's
Content-Security-Policy refuses inline scripts as a second line.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

from .. import _json
from . import _format, _timeline

HERE = Path(__file__).resolve().parent
SHORT_ID = 12
"""Characters of a run id shown, as `flowrun runs` shows them (ids are time-ordered: the first few agree)."""

SORT_KEYS = ("started", "flow", "status", "model", "tokens", "cost", "duration", "id")
"""Columns the runs list sorts by (`?sort=cost&order=asc`)."""


class RunLike(Protocol):
    """What a page reads of a stored run (`flowrunner.history.StoredRun` is one); read-only."""

    @property
    def id(self) -> str: ...
    @property
    def started(self) -> float | None: ...
    @property
    def duration(self) -> float | None: ...
    @property
    def flow(self) -> str: ...
    @property
    def file(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def models(self) -> list[str]: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def total_tokens(self) -> int: ...
    @property
    def cost(self) -> float | None: ...
    @property
    def error_type(self) -> str | None: ...
    @property
    def record(self) -> dict[str, Any]: ...


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(seconds=_format.seconds, dollars=_format.dollars, tokens=_format.tokens,
                       instant=_format.instant, pretty=pretty)
    env.globals["within"] = within
    return env


def render(template: str, **values: Any) -> str:
    return str(_environment().get_template(template).render(**values))


def within(bar: _timeline.Bar, seconds: float) -> float:
    """Where `seconds` falls inside a bar, 0-100 (segments are placed relative to their bar)."""
    if bar.duration <= 0:
        return 0.0
    return max(0.0, min(100.0, (seconds - bar.start) / bar.duration * 100.0))


def pretty(value: Any) -> str:
    """A value as the page shows it: text as it is, anything else as indented JSON."""
    return value if isinstance(value, str) else _json.dumps(value, indent=2)


def _sort_value(run: RunLike, key: str) -> Any:
    value = {"model": ", ".join(run.models), "tokens": run.total_tokens}.get(key, getattr(run, key, None))
    return value


def sort_runs(runs: Iterable[RunLike], key: str, descending: bool) -> list[RunLike]:
    """The runs ordered by a column; runs with no value for it (an unknown cost) go last either way."""
    key = key if key in SORT_KEYS else "started"
    known = [run for run in runs if _sort_value(run, key) is not None]
    unknown = [run for run in runs if _sort_value(run, key) is None]
    known.sort(key=lambda run: _sort_value(run, key), reverse=descending)
    return known + unknown


def runs_page(runs: Sequence[RunLike], *, flow: str, status: str, search: str, limit: int, sort: str,
              descending: bool, flows: Sequence[str]) -> str:
    return render("runs.html", title="runs", runs=sort_runs(runs, sort, descending), flow=flow, status=status,
                  search=search, limit=limit, sort=sort, descending=descending, sort_keys=SORT_KEYS, flows=flows)


def _rounds(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every round of the record with where it is (`round-S-R`), for the details under the timeline."""
    found = []
    steps = record.get("steps")
    for s, step in enumerate(steps if isinstance(steps, list) else []):
        if not isinstance(step, dict):
            continue
        rounds = step.get("rounds")
        for r, round_ in enumerate(rounds if isinstance(rounds, list) else []):
            if isinstance(round_, dict):
                calls = [c for c in round_.get("calls") or [] if isinstance(c, dict)]
                attempts = [a for a in round_.get("attempts") or [] if isinstance(a, dict)]
                found.append({"id": f"round-{s}-{r}", "step": step.get("id"), "number": r + 1, "data": round_,
                              "calls": calls, "attempts": attempts, "messages": _messages(round_)})
    return found


def _messages(round_: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's messages, when the record keeps them (`messages`, or `request.messages`)."""
    request = round_.get("request")
    messages = round_.get("messages", request.get("messages") if isinstance(request, dict) else None)
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def run_page(run: RunLike) -> str:
    record = run.record if isinstance(run.record, dict) else {}
    return render("run.html", title=f"run {run.id[:SHORT_ID]}", run=run, record=record, timeline=_timeline.build(record),
                  rounds=_rounds(record), steps=[s for s in record.get("steps") or [] if isinstance(s, dict)])


def _side(value: Any) -> str:
    return "–" if value is None else pretty(value)


def side_by_side(a: RunLike, b: RunLike) -> list[tuple[str, str, str]]:
    """Rows of (what, in A, in B) for the two runs: the summary, inputs, outputs, then each step."""
    rows: list[tuple[str, str, str]] = [
        ("flow", a.flow, b.flow), ("file", a.file, b.file), ("status", a.status, b.status),
        ("started", _format.instant(a.started), _format.instant(b.started)),
        ("duration", _format.seconds(a.duration), _format.seconds(b.duration)),
        ("models", ", ".join(a.models), ", ".join(b.models)),
        ("tokens (prompt + completion)", f"{a.prompt_tokens:,} + {a.completion_tokens:,}",
         f"{b.prompt_tokens:,} + {b.completion_tokens:,}"),
        ("cost", _format.dollars(a.cost), _format.dollars(b.cost)),
        ("error", _side(a.record.get("error")), _side(b.record.get("error"))),
        ("inputs", _side(a.record.get("inputs")), _side(b.record.get("inputs"))),
    ]
    outputs_a, outputs_b = a.record.get("outputs") or {}, b.record.get("outputs") or {}
    for name in dict.fromkeys([*outputs_a, *outputs_b]):
        rows.append((f"output {name}", _side(outputs_a.get(name)), _side(outputs_b.get(name))))
    steps_a, steps_b = a.record.get("steps") or [], b.record.get("steps") or []
    for index in range(max(len(steps_a), len(steps_b))):
        step_a = steps_a[index] if index < len(steps_a) else {}
        step_b = steps_b[index] if index < len(steps_b) else {}
        name = step_a.get("id") or step_b.get("id")
        rows.append((f"step {name}: rounds", str(len(step_a.get("rounds") or [])), str(len(step_b.get("rounds") or []))))
        rows.append((f"step {name}: calls", _calls(step_a), _calls(step_b)))
        rows.append((f"step {name}: tokens", _format.tokens((step_a.get("usage") or {}).get("total_tokens")),
                     _format.tokens((step_b.get("usage") or {}).get("total_tokens"))))
        rows.append((f"step {name}: duration", _format.seconds(step_a.get("duration")),
                     _format.seconds(step_b.get("duration"))))
        rows.append((f"step {name}: content", _side(step_a.get("content")), _side(step_b.get("content"))))
    return rows


def _calls(step: dict[str, Any]) -> str:
    calls = [c for r in step.get("rounds") or [] for c in r.get("calls") or [] if isinstance(c, dict)]
    return "\n".join(_timeline.call_label(call) for call in calls) or "–"


def diff_page(a: RunLike, b: RunLike, diff: Any) -> str:
    return render("diff.html", title=f"{a.id[:SHORT_ID]} vs {b.id[:SHORT_ID]}", a=a, b=b, rows=side_by_side(a, b),
                  diff=diff)


def error_page(status: int, message: str, hint: str | None = None) -> str:
    return render("error.html", title=f"{status}", status=status, message=message, hint=hint)
