"""`flowrun test PATH...`: run the test cases flows declare under `tests:`, each with its own cassette."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from .._exceptions import FlowValidationError
from ._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_price_option, print_problems, seconds
from ._history import add_log_option, log_run
from ._trace import add_trace_option, maybe_trace

if TYPE_CHECKING:
    from .._flowtest import CaseResult

EPILOG = """\
examples:
  flowrun test flows/                                   # every flow's tests, replayed from cassettes
  flowrun test flows/weather.yaml -k boston             # the cases whose <flow stem>::<name> has "boston"
  flowrun test flows/ --record --base-url http://127.0.0.1:8765/v1   # (re-)record every case's cassette

cassettes: cassettes/<flow stem>/<case name>.yaml beside each flow. Without --record the cases only
replay (record mode none): a missing cassette or a request it lacks fails the case, with a diff
against the closest recording. --record re-records every selected case (mode all) against
--base-url or, with OPENAI_API_KEY set, OpenAI.

exit status: 0 every case passed, 1 any failed, 2 an invalid flow, no case found, or bad usage.
"""


def register(sub: Any) -> None:
    from .._cassette import RECORD_MODES

    parser = sub.add_parser("test", help="run the test cases declared in flows (tests:)",
                            description="Run the test cases flows declare under `tests:` and check what "
                                        "they expect; each case replays its own cassette.",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", metavar="PATH", nargs="+", help="flow files, or folders to search for flows")
    parser.add_argument("-k", dest="keyword", metavar="TEXT",
                        help="only the cases whose <flow stem>::<case name> contains TEXT")
    recording = parser.add_mutually_exclusive_group()
    recording.add_argument("--record", action="store_true",
                           help="record every selected case's cassette anew (record mode all); needs a server")
    recording.add_argument("--record-mode", choices=RECORD_MODES,
                        help="finer control than --record: none (default) replays only, once records "
                             "missing cassettes, new_episodes adds missing requests, all re-records")
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL") or None, metavar="URL",
                        help="server to record against (default: $OPENAI_BASE_URL, else OpenAI with OPENAI_API_KEY)")
    parser.add_argument("--timeout", type=seconds, default=600.0, metavar="SECONDS",
                        help="per-request timeout when recording (default: 600)")
    add_trace_option(parser)
    add_price_option(parser)
    parser.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failing case")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead")
    add_log_option(parser, default=False)
    parser.set_defaults(handler=cmd_test)


def cmd_test(args: argparse.Namespace) -> int:
    from .._flowtest import find_flows, run_case, selected
    from .._loader import load_flow

    mode = args.record_mode or ("all" if args.record else "none")
    key = os.environ.get("OPENAI_API_KEY") or None
    started = time.perf_counter()
    results: list[CaseResult] = []
    invalid: list[str] = []
    found_cases = 0
    for path in find_flows(args.paths):
        try:
            flow = load_flow(path)
        except FlowValidationError as exc:
            print_problems(exc)
            invalid.append(str(path))
            if not args.json:
                print(f"{path} ERROR (invalid flow, see above)", flush=True)
            continue
        for case in selected(flow, args.keyword):
            found_cases += 1
            # What the flow's functions print must not land between the result lines.
            with contextlib.redirect_stdout(sys.stderr):
                result = run_case(flow, case, record_mode=mode, base_url=args.base_url, api_key=key,
                                  timeout=args.timeout, prices=dict(args.prices))
            results.append(result)
            if result.record is not None:
                log_run(result.record, args, flow)
                maybe_trace(result.record, flow, args)
            if not args.json:
                print(f"{result.id} {result.outcome.upper()}", flush=True)
            if args.exitfirst and not result.passed:
                break
        if args.exitfirst and results and not results[-1].passed:
            break
    elapsed = time.perf_counter() - started
    if not found_cases and not invalid:  # an error, not a report of nothing ("0 passed, 0 failed")
        what = f" matching -k {args.keyword!r}" if args.keyword else ""
        print(f"error: no test cases{what} in {', '.join(args.paths)}\n"
              "  hint: declare cases under `tests:` in a flow (see `flowrun init`), or check -k", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        from .._json import dumps

        print(dumps(_as_json(results, invalid, elapsed), indent=2))
    else:
        _print_report(results, invalid, elapsed)
    if invalid:
        return EXIT_USAGE
    return EXIT_OK if all(r.passed for r in results) else EXIT_FAILED


def _print_report(results: list[CaseResult], invalid: list[str], elapsed: float) -> None:
    failed = [r for r in results if not r.passed]
    if failed:
        print(f"\n{' FAILURES ':=^72}")
        for result in failed:
            print(f"{' ' + result.id + ' ':_^72}")
            print(result.report())
    parts = [f"{len(results) - len(failed)} passed", f"{len(failed)} failed"]
    if invalid:
        parts.append(f"{len(invalid)} invalid flow{'' if len(invalid) == 1 else 's'}")
    print(f"{' ' + ', '.join(parts) + f' in {elapsed:.2f}s ':=^72}")


def _as_json(results: list[CaseResult], invalid: list[str], elapsed: float) -> dict[str, Any]:
    return {
        "passed": sum(r.passed for r in results),
        "failed": sum(not r.passed for r in results),
        "invalid_flows": invalid,
        "seconds": round(elapsed, 3),
        "cases": [{"id": r.id, "flow": str(r.flow.path), "name": r.case.name, "outcome": r.outcome,
                   "cassette": str(r.cassette) if r.cassette else None, "seconds": round(r.seconds, 3),
                   "failures": [{"location": str(f.location) if f.location else None, "subject": f.subject,
                                 "message": f.message} for f in r.failures]}
                  for r in results],
    }
