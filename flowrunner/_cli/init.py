"""`flowrun init NAME`: write a starter flow, its function module and a test case."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._common import EXIT_OK


def register(sub: Any) -> None:
    parser = sub.add_parser("init", help="write a starter flow with a function and a test case",
                            description="Write NAME.yaml (a flow with a function and a test case) and "
                                        "NAME_tools.py (the function). Existing files are never overwritten.",
                            epilog="example:\n  flowrun init capitals --dir flows",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", metavar="NAME", help="the flow's name (letters, digits, underscores)")
    parser.add_argument("--dir", type=Path, default=Path("."), help="folder to write into (default: here)")
    parser.add_argument("--schema", metavar="REF",
                        help="path or URL for the yaml-language-server comment (default: the installed schema)")
    parser.set_defaults(handler=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    from .._scaffold import SCHEMA_FILE, schema_ref, write_starter

    written = write_starter(args.name, args.dir, args.schema)
    flow = written[0]
    print(f"wrote {' and '.join(str(p) for p in written)}")
    print("next:")
    if args.schema is None and schema_ref(args.dir)[1]:
        print(f"  flowrun schema > {args.dir / SCHEMA_FILE}    # the schema your editor reads (line 1 points at it)")
    print(f"  flowrun validate {flow}")
    print(f"  flowrun test {flow} --record --base-url URL    # record its test's cassette against a server")
    print("      (URL: e.g. the test server, `python -m flowrunner.testing.server --port 8765` and "
          "http://127.0.0.1:8765/v1; or set OPENAI_API_KEY instead)")
    print(f"  flowrun test {flow}                            # then it replays, no server needed")
    return EXIT_OK
