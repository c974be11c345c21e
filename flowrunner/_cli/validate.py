"""`flowrun validate`: check flows without making any request."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .._exceptions import FlowValidationError
from ._common import EXIT_OK, EXIT_USAGE, count, print_problems


def register(sub: Any) -> None:
    parser = sub.add_parser("validate", help="check flows without making any request",
                            description="Check flows against the schema and their own references "
                                        "(functions, steps, inputs, entry points). Makes no request.",
                            epilog="example:\n  flowrun validate flows/*.yaml\n\n"
                                   "exit status: 0 all valid, 2 any invalid.",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("flows", metavar="FLOW", nargs="+", help="flow files, or folders to search for them")
    parser.set_defaults(handler=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    from .._loader import load_flow

    status = EXIT_OK
    paths = args.flows
    if not all(os.path.isfile(path) for path in paths):
        from .._flowtest import find_flows  # with the matchers: only for folders (and to say what is missing)

        try:
            paths = find_flows(paths)
        except FlowValidationError as exc:  # a path that does not exist
            print_problems(exc)
            return EXIT_USAGE
        if not paths:
            print(f"error: no flows in {', '.join(args.flows)}\n  hint: a flow is a .yaml or .yml file with a "
                  "top-level steps: list (`flowrun init` writes one)", file=sys.stderr)
            return EXIT_USAGE
    for path in paths:
        try:
            flow = load_flow(path)
        except FlowValidationError as exc:
            print_problems(exc)
            status = EXIT_USAGE
            continue
        servers = f", {count(len(flow.mcp), 'mcp server')}" if flow.mcp else ""
        print(f"{path}: ok ({count(len(flow.steps), 'step')}, {count(len(flow.functions), 'function')}{servers})")
    return status
