"""`flowrun help [COMMAND]`: the same text as `flowrun --help` or `flowrun COMMAND --help`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import EXIT_OK, EXIT_USAGE


def register(sub: Any) -> None:
    parser = sub.add_parser("help", help="show the help of flowrun or of one command",
                            description="Show flowrun's help, or a command's (as `flowrun COMMAND --help`).",
                            epilog="examples:\n  flowrun help\n  flowrun help run",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("topic", metavar="COMMAND", nargs="?", help="the command to explain")
    parser.set_defaults(handler=cmd_help)


def cmd_help(args: argparse.Namespace) -> int:
    from . import COMMAND_MODULES, build_parser

    parser = build_parser()
    if args.topic is None:
        parser.print_help()
        return EXIT_OK
    if args.topic not in COMMAND_MODULES:
        import difflib

        close = difflib.get_close_matches(args.topic, COMMAND_MODULES, n=1, cutoff=0.6)
        guess = f"did you mean `flowrun help {close[0]}`? " if close else ""
        print(f"error: no command {args.topic!r}\n  hint: {guess}commands: {', '.join(COMMAND_MODULES)}",
              file=sys.stderr)
        return EXIT_USAGE
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    subparsers.choices[args.topic].print_help()
    return EXIT_OK
