"""`flowrun`: parse arguments, call the library, print. Nothing here decides how a flow runs."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from . import __version__
from ._exceptions import ConfigError, FlowrunnerError, FlowValidationError, RunError

if TYPE_CHECKING:
    from ._model import Flow

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
COMMANDS = ("run", "validate", "chat")

DESCRIPTION = """\
Run declarative YAML flows of LLM chat completions: templated messages, steps that feed
later steps, and Python functions the model can call.

Getting started (no key needed: the shipped cassette is replayed):
  flowrun flows/weather.yaml

Talk to a live server:
  export OPENAI_API_KEY=sk-...                      # OpenAI
  flowrun flows/weather.yaml --base-url http://localhost:11434/v1 --model llama3.2   # Ollama, vLLM, ...
"""

RUN_EPILOG = """\
examples:
  flowrun flows/weather.yaml
  flowrun flows/weather.yaml -i question="Weather in Paris, in celsius?" --json
  flowrun flows/hello.yaml --base-url http://127.0.0.1:8765/v1
  flowrun flows/weather.yaml --record-mode all --base-url URL     # re-record its cassette

which server is used:
  --cassette/--record-mode given    record or replay that cassette (default cassette:
                                    cassettes/<flow stem>.yaml beside the flow)
  OPENAI_API_KEY or a base URL set  run live
  neither, and the flow's cassette exists
                                    replay it (said on stderr)

exit status: 0 succeeded, 1 the run failed (API error, function error, max rounds),
2 invalid flow or usage, 130 interrupted.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowrun", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"flowrun {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a flow (the default: `flowrun FLOW` is `flowrun run FLOW`)",
                         description="Run a flow and print its outputs.", epilog=RUN_EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("flow", metavar="FLOW", help="the flow's YAML file")
    _add_run_options(run)
    run.add_argument("--json", action="store_true", help="print the whole run record as JSON")
    run.add_argument("-q", "--quiet", action="store_true", help="don't show function calls on stderr")

    validate = sub.add_parser("validate", help="check flows without making any request",
                              description="Check flows against the schema and their own references "
                                          "(functions, steps, inputs, entry points). Makes no request.",
                              epilog="example:\n  flowrun validate flows/*.yaml\n\n"
                                     "exit status: 0 all valid, 2 any invalid.",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    validate.add_argument("flows", metavar="FLOW", nargs="+", help="flow files")

    chat = sub.add_parser("chat", help="chat with a flow's first step, functions included",
                          description="A conversation: each line you type is added to the history, the "
                                      "model may call the flow's functions, and it goes on until EOF "
                                      "(Ctrl-D) or /exit.",
                          epilog="example:\n  flowrun chat flows/chat.yaml",
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    chat.add_argument("flow", metavar="FLOW", help="the flow's YAML file")
    chat.add_argument("--step", metavar="ID", help="the step whose messages and functions to use (default: first)")
    _add_run_options(chat)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    from ._cassette import RECORD_MODES

    parser.add_argument("-i", "--input", dest="inputs", action="append", default=[], metavar="NAME=VALUE",
                        help="an input value (repeatable); non-string inputs are read as JSON")
    parser.add_argument("-m", "--model", help="model for every step, overriding the flow")
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL") or None, metavar="URL",
                        help="an OpenAI-compatible server, e.g. http://localhost:8000/v1 "
                             "(default: $OPENAI_BASE_URL, else OpenAI)")
    parser.add_argument("--cassette", type=Path, metavar="PATH", help="cassette file to record or replay")
    parser.add_argument("--record-mode", choices=RECORD_MODES,
                        help="none: replay only; once: record if the cassette is new (default with "
                             "--cassette); new_episodes: replay and record what is missing; all: re-record")
    parser.add_argument("--timeout", type=_seconds, default=600.0, metavar="SECONDS",
                        help="per-request timeout (default: 600)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] not in COMMANDS and not args_list[0].startswith("-"):
        args_list.insert(0, "run")  # `flowrun FLOW` means `flowrun run FLOW`
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "chat":
            return cmd_chat(args)
        return cmd_run(args)
    except FlowValidationError as exc:
        _print_problems(exc)
        return exc.exit_code
    except FlowrunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `flowrun ... | head`: the reader left; say nothing more, and don't let Python complain at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


def cmd_validate(args: argparse.Namespace) -> int:
    from ._loader import load_flow

    status = EXIT_OK
    for path in args.flows:
        try:
            flow = load_flow(path)
        except FlowValidationError as exc:
            _print_problems(exc)
            status = EXIT_USAGE
            continue
        print(f"{path}: ok ({_count(len(flow.steps), 'step')}, {_count(len(flow.functions), 'function')})")
    return status


def _flow_and_inputs(args: argparse.Namespace) -> tuple[Flow, dict[str, Any]]:
    """The flow and its input values, both checked before anything connects anywhere."""
    from ._inputs import parse_assignments, resolve_inputs
    from ._loader import load_flow

    flow = load_flow(args.flow)
    return flow, resolve_inputs(flow, parse_assignments(args.inputs), from_text=True)


def cmd_run(args: argparse.Namespace) -> int:
    from ._engine import Engine

    flow, inputs = _flow_and_inputs(args)
    # With --json, stdout is for the record alone: what the flow's functions print goes to stderr.
    quiet_stdout = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with _connection(flow, args) as transport, quiet_stdout:
        engine = Engine(transport, model=args.model, on_event=None if args.quiet else _show_call)
        record = engine.run(flow, inputs)
    if args.json:
        print(json.dumps(record.to_dict(), indent=2, ensure_ascii=False))
    elif record.status == "succeeded":
        _print_outputs(record.outputs)
    if record.error:
        step = f" in step {record.error['step']!r}" if record.error.get("step") else ""
        print(f"error{step}: {record.error['message']}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_chat(args: argparse.Namespace) -> int:
    from ._engine import Engine

    flow, inputs = _flow_and_inputs(args)
    interactive = sys.stdin.isatty()
    with _connection(flow, args) as transport:
        session = Engine(transport, model=args.model, on_event=_show_call).chat(flow, inputs, step_id=args.step)
        if interactive:
            print(f"chatting with {flow.name} (Ctrl-D or /exit to end)", file=sys.stderr)
        if session.awaiting_answer:
            _chat_turn(session, None)
        for line in _lines(interactive):
            text = line.strip()
            if text in ("/exit", "/quit"):
                break
            if text:
                _chat_turn(session, text)
    return EXIT_OK


def _lines(interactive: bool) -> Iterator[str]:
    """What the user types: with line editing and history on a terminal, else plain lines from stdin."""
    if not interactive:
        yield from sys.stdin
        return
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (input() gains arrow keys and history)
    while True:
        try:
            yield input("> ")
        except EOFError:
            print(file=sys.stderr)
            return


def _chat_turn(session: Any, text: str | None) -> None:
    try:
        turn = session.send(text)
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return
    print(turn.content, flush=True)


@contextlib.contextmanager
def _connection(flow: Flow, args: argparse.Namespace) -> Iterator[Any]:
    """The transport, inside the cassette when one is used; see RUN_EPILOG for the rules."""
    from ._cassette import use_cassette
    from ._transport import OpenAITransport

    key = os.environ.get("OPENAI_API_KEY") or None
    cassette, mode = args.cassette, args.record_mode
    if cassette is None and mode is None and not key and not args.base_url:
        if not flow.default_cassette.is_file():
            raise ConfigError(
                f"nothing to talk to: OPENAI_API_KEY is not set, no --base-url, and there is no cassette "
                f"at {flow.default_cassette} to replay\n"
                "  hint: export OPENAI_API_KEY=..., or --base-url http://localhost:8000/v1 for a local "
                "server (Ollama, vLLM, llama.cpp, or `python -m flowrunner.testing.server`)")
        cassette, mode = flow.default_cassette, "none"
        print(f"no OPENAI_API_KEY or base URL: replaying {cassette}", file=sys.stderr)
    transport = OpenAITransport(base_url=args.base_url, api_key=key, timeout=args.timeout)
    if cassette is None and mode is None:
        yield transport
        return
    with use_cassette(cassette or flow.default_cassette, mode or "once"):
        yield transport


def _print_problems(exc: FlowValidationError) -> None:
    for problem in exc.problems:
        print(problem, file=sys.stderr)


def _show_call(event: Any) -> None:
    if event.kind != "call" or event.call is None:
        return
    call = event.call
    args = json.dumps(call.arguments, ensure_ascii=False) if call.arguments is not None else call.raw_arguments
    result = call.result if isinstance(call.result, str) else json.dumps(call.result, ensure_ascii=False)
    outcome = f"error: {call.error}" if call.error else _clip(result)
    print(f"  [{event.step}] {call.name}({args}) -> {outcome}", file=sys.stderr)


def _print_outputs(outputs: dict[str, str]) -> None:
    if len(outputs) == 1:
        print(next(iter(outputs.values())))
        return
    for name, value in outputs.items():
        print(f"{name}: {value}" if "\n" not in value else f"{name}:\n{value}\n")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _clip(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
