"""`flowrun run FLOW` (also plain `flowrun FLOW`): run a flow and print its outputs."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from ._approval import terminal_approver
from ._common import EXIT_FAILED, EXIT_OK, add_run_options, connection, flow_and_inputs, usage_line
from ._display import Display
from ._history import add_log_option, log_run
from ._trace import maybe_trace

EPILOG = """\
examples:
  flowrun flows/weather.yaml
  flowrun flows/weather.yaml -i question="Weather in Paris, in celsius?" --json
  flowrun flows/summarize_translate.yaml -i text=@notes.txt -o out.json   # an input from a file
  git log -3 | flowrun flows/summarize_translate.yaml -i text=@-         # ... or from stdin
  flowrun flows/weather.yaml --inputs inputs.json              # {"question": "..."}
  flowrun flows/hello.yaml --base-url http://127.0.0.1:8765/v1
  flowrun flows/weather.yaml --record-mode all --base-url URL     # re-record its cassette

which server is used:
  --cassette/--record-mode given    record or replay that cassette (default cassette:
                                    cassettes/<flow stem>.yaml beside the flow)
  OPENAI_API_KEY or a base URL set  run live
  neither, and the flow's cassette exists
                                    replay it (said on stderr)

failed requests are retried as the flow's `retry:` says (by default 429, 5xx, timeouts
and connection errors, up to 5 attempts); each retry is noted on stderr.

exit status: 0 succeeded, 1 the run failed (API error, function error, max rounds),
2 invalid flow or usage, 130 interrupted.
"""


def register(sub: Any) -> None:
    parser = sub.add_parser("run", help="run a flow (the default: `flowrun FLOW` is `flowrun run FLOW`)",
                            description="Run a flow and print its outputs.", epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("flow", metavar="FLOW", help="the flow's YAML file")
    add_run_options(parser)
    add_log_option(parser, default=True)
    parser.add_argument("--inputs", dest="inputs_file", metavar="FILE.json",
                        help="the inputs as one JSON object (at most 10 MB); -i values go on top")
    parser.add_argument("-o", "--output", dest="output_file", type=Path, metavar="FILE",
                        help="also write the outputs, as a JSON object, to FILE (when the run succeeds)")
    parser.add_argument("--json", action="store_true", help="print the whole run record as JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="don't show function calls on stderr")
    parser.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from .._engine import Engine
    from .._json import dumps

    flow, inputs = flow_and_inputs(args)
    if args.output_file is not None and not args.output_file.resolve().parent.is_dir():
        from .._exceptions import UsageError

        raise UsageError(f"-o {args.output_file}: the folder {args.output_file.parent} does not exist")
    # With --json, stdout is for the record alone: what the flow's functions print goes to stderr.
    quiet_stdout = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    # A streamed step's text appears as it comes, except with --json (stdout is the record's).
    display = Display(stream_to=None if args.json else sys.stdout, calls=not args.quiet)
    with connection(flow, args) as transport, quiet_stdout:
        engine = Engine(transport, model=args.model, on_event=display, rate_limit=args.rate_limit,
                        approve=terminal_approver(), prices=dict(args.prices))
        record = engine.run(flow, inputs)
    display.finish()
    if args.output_file is not None and record.status == "succeeded":
        write_outputs(args.output_file, record.outputs)
    if args.json:
        print(dumps(record.to_dict(), indent=2))  # valid JSON whatever the record holds
    elif record.status == "succeeded":
        values = list(record.outputs.values())
        if not (len(values) == 1 and display.shown and values[0] == display.shown[-1]):
            print_outputs(record.outputs)  # unless the one output is the answer just streamed
    for step_record in record.steps:  # what a step passed on but should not go unseen (a cut answer)
        for warning in step_record.warnings:
            print(f"warning in step {step_record.id!r}: {warning}", file=sys.stderr)
    log_run(record, args, flow)  # after the outputs: a busy history delays nothing the user waits for
    maybe_trace(record, flow, args)  # likewise: a collector that is slow to answer
    if record.error:
        step = f" in step {record.error['step']!r}" if record.error.get("step") else ""
        print(f"error{step}: {record.error['message']}", file=sys.stderr)
    show_cost(record)
    return EXIT_FAILED if record.error else EXIT_OK


def show_cost(record: Any) -> None:
    """Tokens and cost on stderr, and once, why the cost is unknown if it is."""
    from .._pricing import cost_note, cost_problems

    print(usage_line(record.usage, record.cost), file=sys.stderr)
    problems = cost_problems(record)
    if problems:
        print(cost_note(problems), file=sys.stderr)


def write_outputs(path: Path, outputs: dict[str, str]) -> None:
    """`-o FILE`: the outputs as JSON, written whole (to a temporary file, then renamed) or not at all."""
    from .._exceptions import UsageError
    from .._json import dumps

    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(dumps(outputs, indent=2) + "\n", encoding="utf-8")  # a lone surrogate escaped
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise UsageError(f"cannot write the outputs to {path}: {exc.strerror or exc}") from None


def print_outputs(outputs: dict[str, str]) -> None:
    if len(outputs) == 1:
        print(next(iter(outputs.values())))
        return
    for name, value in outputs.items():
        print(f"{name}: {value}" if "\n" not in value else f"{name}:\n{value}\n")
