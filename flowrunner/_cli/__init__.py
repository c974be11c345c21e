"""`flowrun`: parse arguments, call the library, print. Nothing here decides how a flow runs.

Each command lives in its own module with a `register(subparsers)` that adds its parser and sets
`handler`; `COMMAND_MODULES` lists them in the order `--help` shows them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from .. import __version__
from .._exceptions import FlowrunnerError, FlowValidationError
from ._common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, print_problems
from ._display import readable_output

COMMAND_MODULES = ("run", "validate", "test", "batch", "chat", "runs", "mcp", "init", "schema", "help")

DESCRIPTION = """\
Run declarative YAML flows of LLM chat completions: templated messages, steps that feed
later steps, and Python functions the model can call.

Getting started (no key needed: the shipped cassette is replayed):
  flowrun flows/weather.yaml

Talk to a live server:
  export OPENAI_API_KEY=sk-...                      # OpenAI
  flowrun flows/weather.yaml --base-url http://localhost:11434/v1 --model llama3.2   # Ollama, vLLM, ...
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowrun", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"flowrun {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _mistyped_command(word: str) -> str | None:
    """The command `word` looks like a typo of, when it is no file (`flowrun valdate x.yaml`)."""
    import difflib

    if os.path.exists(word):
        return None
    close = difflib.get_close_matches(word, COMMAND_MODULES, n=1, cutoff=0.6)
    return close[0] if close else None


def main(argv: Sequence[str] | None = None) -> int:
    readable_output()
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] not in COMMAND_MODULES and not args_list[0].startswith("-"):
        typo = _mistyped_command(args_list[0])
        if typo is not None:
            print(f"flowrun: error: {args_list[0]!r} is neither a command nor a flow file; did you mean "
                  f"`flowrun {typo}`?", file=sys.stderr)
            return EXIT_USAGE
        args_list.insert(0, "run")  # `flowrun FLOW` means `flowrun run FLOW`
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = args.handler(args)
        sys.stdout.flush()  # a reader gone from the pipe shows here, where it is handled, not at exit
        return code
    except FlowValidationError as exc:
        print_problems(exc)
        return exc.exit_code
    except FlowrunnerError as exc:
        from .._secrets import redact

        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `flowrun ... | head`: the reader left; say nothing more, and don't let Python complain at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
